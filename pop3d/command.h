// The POP3 command-line parser: one input line in, a command name and its arguments out.
//
// Kept apart from the session so that it can be unit-tested and fuzzed on its own. It never
// allocates more than the line it is given and never throws: every malformed line is a value
// (ParseError) that the session turns into a precise "-ERR".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coffer::pop3d {

enum class ParseError {
  kNone,
  kEmpty,         // blank line
  kNulByte,       // a NUL (or other control byte) inside the line
  kBadName,       // command name not 1..8 ASCII letters/digits
  kTooManyArgs,   // more than kMaxArgs arguments
  kArgTooLong,    // an argument longer than kMaxArgLength (RFC 1939: 40 octets; we allow more)
};

struct ParsedCommand {
  ParseError error = ParseError::kNone;
  std::string name;               // upper-cased ("RETR")
  std::vector<std::string> args;  // split on runs of spaces
  std::string rest;               // everything after the name and one space, verbatim (PASS)
};

inline constexpr std::size_t kMaxArgs = 8;
inline constexpr std::size_t kMaxArgLength = 1024;

// Parses one line without its line ending (CRLF or bare LF already stripped; a trailing CR is
// stripped here too). Thread-safe, noexcept.
ParsedCommand ParseCommand(std::string_view line) noexcept;

// A message number or count: decimal digits only (no sign, no spaces), at most 9 digits so it
// fits any counter. nullopt otherwise.
std::optional<std::uint64_t> ParseNumber(std::string_view text) noexcept;

// Human-readable text for a parse error, used after "-ERR ".
std::string_view ParseErrorText(ParseError error) noexcept;

}  // namespace coffer::pop3d
