// The exit statuses of every coffer program: the sysexits(3) table, in one place so that the
// programs and their man pages agree (each page has the same EXIT STATUS table; a program uses
// only the rows that can happen to it).
#pragma once

namespace coffer::exits {

inline constexpr int kOk = 0;
// 1 and 2 are reserved for answers rather than failures: cofferctl status (1 degraded, 2 not
// serving) and cofferctl verify (1 mismatch), for Nagios-style checks.
inline constexpr int kDegraded = 1;
inline constexpr int kNotServing = 2;
inline constexpr int kUsage = 64;        // EX_USAGE: bad command line
inline constexpr int kDataErr = 65;      // EX_DATAERR: damaged input (key file, objects)
inline constexpr int kNoInput = 66;      // EX_NOINPUT: a file that must exist does not
inline constexpr int kUnavailable = 69;  // EX_UNAVAILABLE: a peer, port or lock is not there
inline constexpr int kSoftware = 70;     // EX_SOFTWARE: internal error
inline constexpr int kCantCreate = 73;   // EX_CANTCREAT: would overwrite; cannot create or mount
inline constexpr int kIoErr = 74;        // EX_IOERR: read/write error
inline constexpr int kTempFail = 75;     // EX_TEMPFAIL: try again later
inline constexpr int kNoPerm = 77;       // EX_NOPERM: wrong passphrase/key, permissions
inline constexpr int kConfig = 78;       // EX_CONFIG: configuration error

}  // namespace coffer::exits
