// CURVE key files: see curve.h.
#include "replicator/curve.h"

#include <fcntl.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::replicator {
namespace {

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' ||
                        s.back() == '\t')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return std::string(s);
}

}  // namespace

bool IsZ85Key(std::string_view key) {
  if (key.size() != kZ85KeySize) return false;
  std::string copy(key);
  std::uint8_t out[32];
  return zmq_z85_decode(out, copy.c_str()) != nullptr;
}

std::string ReadKeyFile(const std::string& path) {
  std::string key = Trim(ReadFile(path, 4096));
  if (!IsZ85Key(key)) {
    throw Error(EINVAL, path + ": not a CURVE key file (one line of 40 Z85 characters)");
  }
  return key;
}

CurveKeyPair LoadKeyPair(const std::string& secret_path) {
  CurveKeyPair pair;
  pair.secret_key = ReadKeyFile(secret_path);
  char pub[41];
  if (zmq_curve_public(pub, pair.secret_key.c_str()) != 0) {
    throw Error(EINVAL, secret_path + ": cannot derive the CURVE public key");
  }
  pair.public_key = pub;
  constexpr std::string_view kSuffix = ".key_secret";
  if (secret_path.size() > kSuffix.size() &&
      secret_path.compare(secret_path.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
    std::string public_path = secret_path.substr(0, secret_path.size() - kSuffix.size()) + ".key";
    if (access(public_path.c_str(), F_OK) == 0 && ReadKeyFile(public_path) != pair.public_key) {
      throw Error(EINVAL, public_path + ": does not match " + secret_path);
    }
  }
  return pair;
}

std::vector<std::string> ReadKeyList(const std::string& path) {
  std::string text = ReadFile(path, 4 << 20);
  std::vector<std::string> keys;
  std::size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string line = Trim(std::string_view(text).substr(pos, end - pos));
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    if (!IsZ85Key(line)) {
      throw Error(EINVAL, path + ":" + std::to_string(line_no) + ": not a Z85 CURVE public key");
    }
    keys.push_back(line);
  }
  return keys;
}

CurveKeyPair GenerateKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) ThrowErrno("zmq_curve_keypair");
  return {pub, sec};
}

void WriteKeyPair(const std::string& prefix, const CurveKeyPair& pair) {
  AtomicWriteFile(prefix + ".key_secret", pair.secret_key + "\n", 0600);
  AtomicWriteFile(prefix + ".key", pair.public_key + "\n", 0644);
}

}  // namespace coffer::replicator
