// coffer-keytool's commands as functions, so that main.cc only parses options (STYLE.md §1).
//
// Each command reads and writes files through common/keyfile.h and common/passphrase.h, writes
// what it has to say to `out`, and throws coffer::Error on failure (ExitCodeFor() maps that to
// an exit status). No command prints key bytes; every file it writes is written atomically
// (temp file, fsync, rename, fsync of the directory) so that a crash leaves the old or the new
// file, never a torn one.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "common/error.h"
#include "common/passphrase.h"
#include "common/sysexits.h"

namespace coffer::keytool {

// Exit statuses (sysexits.h values, documented in coffer-keytool(1)).
enum ExitCode : int {
  kExitOk = exits::kOk,
  kExitUsage = exits::kUsage,            // bad command line, or no terminal for a passphrase
  kExitDataErr = exits::kDataErr,        // damaged, truncated or tampered key file; wrong kind
  kExitNoInput = exits::kNoInput,        // key file (or passphrase file) missing
  kExitSoftware = exits::kSoftware,      // internal error
  kExitCantCreate = exits::kCantCreate,  // refusing to overwrite an existing file
  kExitIoErr = exits::kIoErr,            // read/write error
  kExitNoPerm = exits::kNoPerm,          // wrong passphrase, or key file permissions too loose
};
int ExitCodeFor(const Error& e);

// Where a passphrase comes from; `none` means "no passphrase" (only where allowed).
struct PassOptions {
  std::optional<std::string> file;
  std::optional<int> fd;
  bool none = false;
  passphrase::Source source() const { return passphrase::Source{file, fd}; }
};

struct KdfOptions {
  int scrypt_logn = 17;  // N = 2^logn
  int scrypt_r = 8;
  int scrypt_p = 1;
};

// init: a new key file with one fresh key epoch. Refuses to overwrite.
void Init(const std::string& keyfile, const PassOptions& pass, const KdfOptions& kdf,
          std::ostream& out);
// show: public facts from the header; never unlocks, never prints key bytes.
void Show(const std::string& keyfile, std::ostream& out);
// verify: unlocks with the passphrase and checks everything; prints a one-line verdict.
void Verify(const std::string& keyfile, const PassOptions& pass, std::ostream& out);
// passwd: re-wraps under a new passphrase (or none), atomically.
void Passwd(const std::string& keyfile, const PassOptions& old_pass, const PassOptions& new_pass,
            const KdfOptions& kdf, std::ostream& out);
// rotate: adds a key epoch for new writes; the file keeps its passphrase and KDF parameters.
void Rotate(const std::string& keyfile, const PassOptions& pass, std::ostream& out);
// export: writes `out_file` (refuses to overwrite), the keys wrapped under a one-time
// passphrase; with `export_pass` unset, generates one and prints it.
void Export(const std::string& keyfile, const PassOptions& pass, const std::string& out_file,
            const PassOptions& export_pass, std::ostream& out);
// import: reads an export file and writes a new key file (refuses to overwrite).
void Import(const std::string& in_file, const PassOptions& export_pass,
            const std::string& keyfile, const PassOptions& new_pass, const KdfOptions& kdf,
            std::ostream& out);
// curve-keygen: PREFIX.key_secret (0600) and PREFIX.key (0644), one Z85 line each.
void CurveKeygen(const std::string& prefix, std::ostream& out);

// A random passphrase of 128+ bits, easy to read aloud (groups of 5 base32 letters).
std::string GenerateOneTimePassphrase();

}  // namespace coffer::keytool
