// CURVE key files (the format of `coffer-keytool curve-keygen`): one line of 40 Z85 characters,
// PREFIX.key_secret (mode 0600) and PREFIX.key (public). Lists of allowed public keys are one
// key a line; blank lines and lines starting with '#' are ignored.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace coffer::replicator {

inline constexpr std::size_t kZ85KeySize = 40;

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// True if `key` is 40 Z85 characters that decode to 32 bytes.
bool IsZ85Key(std::string_view key);

// Reads a one-line Z85 key file; throws coffer::Error naming the file when it is not one.
std::string ReadKeyFile(const std::string& path);

// Reads PREFIX.key_secret and derives the public key from it (PREFIX.key, when present, must
// match). `secret_path` may also be given directly (a path ending in ".key_secret").
CurveKeyPair LoadKeyPair(const std::string& secret_path);

// Reads a file of allowed public keys; throws naming file and line for a malformed key.
std::vector<std::string> ReadKeyList(const std::string& path);

// A fresh key pair (zmq_curve_keypair), for tests and tools.
CurveKeyPair GenerateKeyPair();

// Writes PREFIX.key_secret (0600) and PREFIX.key (0644), for tests.
void WriteKeyPair(const std::string& prefix, const CurveKeyPair& pair);

}  // namespace coffer::replicator
