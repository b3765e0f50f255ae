// See digest.h.
#include "replicator/digest.h"

#include <sodium.h>

#include <cerrno>

#include "common/error.h"

namespace coffer::replicator {

std::string Digest(std::string_view sealed) {
  if (sodium_init() < 0) throw Error(EIO, "libsodium initialisation failed");
  unsigned char out[16];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(sealed.data()),
                     sealed.size(), nullptr, 0);
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

}  // namespace coffer::replicator
