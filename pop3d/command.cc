// See command.h.
#include "pop3d/command.h"

namespace coffer::pop3d {

ParsedCommand ParseCommand(std::string_view line) noexcept {
  ParsedCommand out;
  try {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (char c : line) {
      // NUL and other C0 controls (except TAB, which some clients send in passwords) are refused;
      // bytes >= 0x80 are allowed (UTF-8 user names and passwords, RFC 6856).
      auto u = static_cast<unsigned char>(c);
      if (u == 0 || (u < 0x20 && c != '\t') || u == 0x7f) {
        out.error = ParseError::kNulByte;
        return out;
      }
    }
    std::size_t start = 0;
    while (start < line.size() && line[start] == ' ') ++start;
    if (start == line.size()) {
      out.error = ParseError::kEmpty;
      return out;
    }
    std::size_t end = line.find(' ', start);
    if (end == std::string_view::npos) end = line.size();
    std::string_view name = line.substr(start, end - start);
    if (name.empty() || name.size() > 8) {
      out.error = ParseError::kBadName;
      return out;
    }
    out.name.reserve(name.size());
    for (char c : name) {
      bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      bool digit = c >= '0' && c <= '9';
      if (!alpha && !digit) {
        out.error = ParseError::kBadName;
        out.name.clear();
        return out;
      }
      out.name.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    }
    if (end < line.size()) out.rest = std::string(line.substr(end + 1));
    std::size_t pos = end;
    while (pos < line.size()) {
      while (pos < line.size() && line[pos] == ' ') ++pos;
      if (pos == line.size()) break;
      std::size_t arg_end = line.find(' ', pos);
      if (arg_end == std::string_view::npos) arg_end = line.size();
      if (out.args.size() == kMaxArgs) {
        out.error = ParseError::kTooManyArgs;
        return out;
      }
      if (arg_end - pos > kMaxArgLength) {
        out.error = ParseError::kArgTooLong;
        return out;
      }
      out.args.emplace_back(line.substr(pos, arg_end - pos));
      pos = arg_end;
    }
  } catch (...) {  // std::bad_alloc only; report it as an unusable line
    out = ParsedCommand{};
    out.error = ParseError::kArgTooLong;
  }
  return out;
}

std::optional<std::uint64_t> ParseNumber(std::string_view text) noexcept {
  if (text.empty() || text.size() > 9) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

std::string_view ParseErrorText(ParseError error) noexcept {
  switch (error) {
    case ParseError::kNone: return "OK";
    case ParseError::kEmpty: return "Empty command";
    case ParseError::kNulByte: return "Control characters in command";
    case ParseError::kBadName: return "Unknown command";
    case ParseError::kTooManyArgs: return "Too many arguments";
    case ParseError::kArgTooLong: return "Argument too long";
  }
  return "Bad command";
}

}  // namespace coffer::pop3d
