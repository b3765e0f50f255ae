// Config files (TOML, parsed by toml++) with typed getters, documented defaults and errors that
// name the file, the line and the key.
//
// Every program reads one TOML file. Getters take the dotted key, the documented default and,
// for numbers, the allowed range; a wrong type or an out-of-range value throws ConfigError with
// "FILE:LINE:COLUMN: key 'a.b': ...". RejectUnknown() turns a typo in a key name into an error
// instead of a silently ignored setting.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace coffer::config {

// A problem with a config file or value; err() is EINVAL.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::string what) : Error(EINVAL, std::move(what)) {}
};

// An immutable parsed config (or a table inside one). Cheap to copy; thread-compatible.
class Config {
 public:
  // Reads and parses `path`. Throws ConfigError on a missing file or a syntax error (with line
  // and column).
  static Config Load(const std::string& path);
  // Parses `text`; `source` names it in errors (a path, "<flags>", "<test>").
  static Config Parse(std::string_view text, std::string source);
  // No settings at all: every getter returns its default.
  static Config Empty(std::string source = "<defaults>");

  bool Has(std::string_view key) const;

  std::string String(std::string_view key, std::string_view default_value) const;
  std::optional<std::string> OptionalString(std::string_view key) const;
  std::int64_t Int(std::string_view key, std::int64_t default_value, std::int64_t min,
                   std::int64_t max) const;
  double Double(std::string_view key, double default_value, double min, double max) const;
  bool Bool(std::string_view key, bool default_value) const;
  std::vector<std::string> StringArray(std::string_view key,
                                       std::vector<std::string> default_value) const;
  // The tables of an array of tables (`[[node]]` sections); each keeps this file's name and its
  // own position for error messages.
  std::vector<Config> TableArray(std::string_view key) const;
  // A sub-table (`[section]`); Empty-like if absent.
  Config Table(std::string_view key) const;

  // Throws ConfigError naming the first key (in this table, recursively for sub-tables given as
  // "section.key" or "section.*") that is not listed in `known`.
  void RejectUnknown(std::initializer_list<std::string_view> known) const;

  // Throws ConfigError("FILE:LINE:COL: key 'key': message") at the position of `key` (or of
  // this table when the key is absent). For checks the getters cannot express.
  [[noreturn]] void Fail(std::string_view key, std::string_view message) const;

  const std::string& source() const;

 private:
  struct Impl;
  explicit Config(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace coffer::config
