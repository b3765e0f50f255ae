// See config.h.
#include "common/config.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "common/fd.h"

namespace coffer::config {

struct Config::Impl {
  std::shared_ptr<const toml::table> root;  // owns the parse tree
  const toml::table* table = nullptr;       // this view; points into *root
  std::string source;
  std::string prefix;  // dotted path of this table ("" for the root), for messages
};

namespace {

constexpr std::size_t kMaxConfigBytes = 4 << 20;

std::string Where(const std::string& source, const toml::source_region& region) {
  std::ostringstream out;
  out << source;
  if (region.begin.line > 0) out << ':' << region.begin.line << ':' << region.begin.column;
  return out.str();
}

const char* TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    default: return "nothing";
  }
}

}  // namespace

Config Config::Parse(std::string_view text, std::string source) {
  toml::table parsed;
  try {
    parsed = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw ConfigError(Where(source, e.source()) + ": " + std::string(e.description()));
  }
  auto impl = std::make_shared<Impl>();
  auto root = std::make_shared<const toml::table>(std::move(parsed));
  impl->table = root.get();
  impl->root = std::move(root);
  impl->source = std::move(source);
  return Config(std::move(impl));
}

Config Config::Load(const std::string& path) {
  std::string text;
  try {
    text = ReadFile(path, kMaxConfigBytes);
  } catch (const Error& e) {
    throw ConfigError(std::string("cannot read config file ") + e.what());
  }
  return Parse(text, path);
}

Config Config::Empty(std::string source) { return Parse("", std::move(source)); }

const std::string& Config::source() const { return impl_->source; }

bool Config::Has(std::string_view key) const {
  return static_cast<bool>(impl_->table->at_path(key));
}

void Config::Fail(std::string_view key, std::string_view message) const {
  toml::node_view<const toml::node> node = impl_->table->at_path(key);
  const toml::source_region& region = node ? node.node()->source() : impl_->table->source();
  std::string full = impl_->prefix.empty() ? std::string(key) : impl_->prefix + "." + std::string(key);
  throw ConfigError(Where(impl_->source, region) + ": key '" + full + "': " +
                    std::string(message));
}

std::optional<std::string> Config::OptionalString(std::string_view key) const {
  auto node = impl_->table->at_path(key);
  if (!node) return std::nullopt;
  if (!node.is_string()) Fail(key, std::string("expected a string, found ") + TypeName(node.type()));
  return std::string(*node.value<std::string_view>());
}

std::string Config::String(std::string_view key, std::string_view default_value) const {
  auto v = OptionalString(key);
  return v ? *v : std::string(default_value);
}

std::int64_t Config::Int(std::string_view key, std::int64_t default_value, std::int64_t min,
                         std::int64_t max) const {
  auto node = impl_->table->at_path(key);
  if (!node) return default_value;
  if (!node.is_integer()) Fail(key, std::string("expected an integer, found ") + TypeName(node.type()));
  std::int64_t v = *node.value<std::int64_t>();
  if (v < min || v > max) {
    Fail(key, "value " + std::to_string(v) + " is out of range [" + std::to_string(min) + ", " +
                  std::to_string(max) + "]");
  }
  return v;
}

double Config::Double(std::string_view key, double default_value, double min, double max) const {
  auto node = impl_->table->at_path(key);
  if (!node) return default_value;
  if (!node.is_number()) Fail(key, std::string("expected a number, found ") + TypeName(node.type()));
  double v = *node.value<double>();
  if (!std::isfinite(v) || v < min || v > max) {
    std::ostringstream msg;
    msg << "value " << v << " is out of range [" << min << ", " << max << "]";
    Fail(key, msg.str());
  }
  return v;
}

bool Config::Bool(std::string_view key, bool default_value) const {
  auto node = impl_->table->at_path(key);
  if (!node) return default_value;
  if (!node.is_boolean()) Fail(key, std::string("expected true or false, found ") + TypeName(node.type()));
  return *node.value<bool>();
}

std::vector<std::string> Config::StringArray(std::string_view key,
                                             std::vector<std::string> default_value) const {
  auto node = impl_->table->at_path(key);
  if (!node) return default_value;
  const toml::array* arr = node.as_array();
  if (!arr) Fail(key, std::string("expected an array of strings, found ") + TypeName(node.type()));
  std::vector<std::string> out;
  for (const toml::node& elem : *arr) {
    auto s = elem.value<std::string_view>();
    if (!s) {
      throw ConfigError(Where(impl_->source, elem.source()) + ": key '" + std::string(key) +
                        "': expected only strings in the array, found " + TypeName(elem.type()));
    }
    out.emplace_back(*s);
  }
  return out;
}

std::vector<Config> Config::TableArray(std::string_view key) const {
  std::vector<Config> out;
  auto node = impl_->table->at_path(key);
  if (!node) return out;
  const toml::array* arr = node.as_array();
  if (!arr || !arr->is_array_of_tables()) {
    Fail(key, "expected an array of tables ([[" + std::string(key) + "]] sections)");
  }
  std::size_t i = 0;
  for (const toml::node& elem : *arr) {
    auto impl = std::make_shared<Impl>(*impl_);
    impl->table = elem.as_table();
    impl->prefix = (impl_->prefix.empty() ? "" : impl_->prefix + ".") + std::string(key) + "[" +
                   std::to_string(i++) + "]";
    out.push_back(Config(std::move(impl)));
  }
  return out;
}

Config Config::Table(std::string_view key) const {
  auto node = impl_->table->at_path(key);
  auto impl = std::make_shared<Impl>(*impl_);
  impl->prefix = (impl_->prefix.empty() ? "" : impl_->prefix + ".") + std::string(key);
  if (!node) {
    static const toml::table kEmpty;
    impl->table = &kEmpty;
  } else if (const toml::table* t = node.as_table()) {
    impl->table = t;
  } else {
    Fail(key, std::string("expected a table ([") + std::string(key) + "]), found " +
                  TypeName(node.type()));
  }
  return Config(std::move(impl));
}

void Config::RejectUnknown(std::initializer_list<std::string_view> known) const {
  std::set<std::string, std::less<>> names(known.begin(), known.end());
  // Walks tables recursively; arrays of tables are checked by their own Config (TableArray).
  auto walk = [&](auto&& self, const toml::table& table, const std::string& path) -> void {
    for (const auto& [k, v] : table) {
      std::string full = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
      if (names.count(full) || names.count(path.empty() ? "*" : path + ".*")) continue;
      if (v.is_table() && std::any_of(names.begin(), names.end(), [&](const std::string& n) {
            return n.rfind(full + ".", 0) == 0;
          })) {
        self(self, *v.as_table(), full);
        continue;
      }
      std::string shown = impl_->prefix.empty() ? full : impl_->prefix + "." + full;
      throw ConfigError(Where(impl_->source, k.source()) + ": unknown key '" + shown + "'");
    }
  };
  walk(walk, *impl_->table, "");
}

}  // namespace coffer::config
