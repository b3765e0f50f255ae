// coffer-keytool: command-line front end. Parses options (CLI11) and calls keytool.h; all the
// work and all the error handling policy live there. See coffer-keytool(1).
#include <unistd.h>

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/crypto.h"
#include "common/error.h"
#include "common/passphrase.h"
#include "common/version.h"
#include "keytool/keytool.h"

namespace {

using coffer::keytool::KdfOptions;
using coffer::keytool::PassOptions;

constexpr const char* kDefaultConfig = "/etc/coffer/keytool.toml";
constexpr const char* kDefaultKeyfile = "/etc/coffer/coffer.key";

void AddPassOptions(CLI::App* cmd, PassOptions* pass, const std::string& prefix,
                    const std::string& what, bool allow_none) {
  auto* file = cmd->add_option("--" + prefix + "passfile", pass->file,
                               "read the " + what + " from the first line of this file");
  auto* fd = cmd->add_option("--" + prefix + "passfd", pass->fd,
                             "read the " + what + " from this open file descriptor");
  file->excludes(fd);
  if (allow_none) {
    auto* none = cmd->add_flag("--no-passphrase", pass->none,
                               "store the key without a passphrase (file mode 0600)");
    none->excludes(file);
    none->excludes(fd);
  }
}

void AddKdfOptions(CLI::App* cmd, KdfOptions* kdf) {
  cmd->add_option("--scrypt-logn", kdf->scrypt_logn,
                  "scrypt cost: N = 2^LOGN (10..22)")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "coffer-keytool: create, inspect, re-wrap, rotate, export and import coffer key files, "
      "and make ZeroMQ CURVE key pairs.\nPassphrases are read from the terminal (no echo), "
      "--passfile or --passfd; never from the command line."};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", std::string("coffer-keytool ") + coffer::kVersion);
  std::string config_path;
  app.add_option("--config", config_path,
                 std::string("config file (default ") + kDefaultConfig + " if it exists)");

  std::string keyfile;
  PassOptions pass, new_pass, export_pass;
  KdfOptions kdf;
  std::string out_file, in_file, prefix;

  auto add_keyfile = [&](CLI::App* cmd) {
    cmd->add_option("--keyfile,-k", keyfile,
                    std::string("key file (default from config, else ") + kDefaultKeyfile + ")");
  };

  CLI::App* init = app.add_subcommand("init", "create a new key file with a fresh 256-bit key");
  add_keyfile(init);
  AddPassOptions(init, &pass, "", "new passphrase", true);
  AddKdfOptions(init, &kdf);

  CLI::App* show = app.add_subcommand("show", "show version, epochs, KDF and fingerprint");
  add_keyfile(show);

  CLI::App* verify = app.add_subcommand("verify", "check the key file and its passphrase");
  add_keyfile(verify);
  AddPassOptions(verify, &pass, "", "passphrase", false);

  CLI::App* passwd = app.add_subcommand("passwd", "re-wrap the key under a new passphrase");
  add_keyfile(passwd);
  AddPassOptions(passwd, &pass, "", "current passphrase", false);
  AddPassOptions(passwd, &new_pass, "new-", "new passphrase", true);
  AddKdfOptions(passwd, &kdf);

  CLI::App* rotate = app.add_subcommand("rotate", "add a new key epoch for new writes");
  add_keyfile(rotate);
  AddPassOptions(rotate, &pass, "", "passphrase", false);

  CLI::App* exp = app.add_subcommand(
      "export", "write the keys to a transfer file wrapped under a one-time passphrase");
  add_keyfile(exp);
  AddPassOptions(exp, &pass, "", "key file's passphrase", false);
  exp->add_option("--out,-o", out_file, "transfer file to write")->required();
  AddPassOptions(exp, &export_pass, "export-", "one-time passphrase (default: generate one)",
                 false);

  CLI::App* imp = app.add_subcommand("import", "make a key file from a transfer file");
  add_keyfile(imp);
  imp->add_option("--in,-i", in_file, "transfer file made by export")->required();
  AddPassOptions(imp, &export_pass, "export-", "one-time passphrase", false);
  AddPassOptions(imp, &pass, "", "new key file's passphrase", true);
  AddKdfOptions(imp, &kdf);

  CLI::App* curve = app.add_subcommand(
      "curve-keygen", "make a ZeroMQ CURVE key pair: PREFIX.key_secret (0600) and PREFIX.key");
  curve->add_option("--out,-o", prefix, "path prefix of the two files")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << "coffer-keytool: " << e.what() << "\nRun with --help for usage.\n";
    return coffer::keytool::kExitUsage;
  }

  try {
    coffer::crypto::HardenProcess();
    // Settings: command line > config file > built-in defaults.
    bool explicit_config = !config_path.empty();
    if (!explicit_config && ::access(kDefaultConfig, F_OK) == 0) config_path = kDefaultConfig;
    if (!config_path.empty()) {
      auto config = coffer::config::Config::Load(config_path);
      config.RejectUnknown({"keyfile", "scrypt_logn"});
      if (keyfile.empty()) keyfile = config.String("keyfile", kDefaultKeyfile);
      // Only commands that have --scrypt-logn take the config's default for it.
      const CLI::Option* logn =
          app.get_subcommands().front()->get_option_no_throw("--scrypt-logn");
      if (logn && logn->count() == 0 && config.Has("scrypt_logn")) {
        kdf.scrypt_logn = static_cast<int>(config.Int("scrypt_logn", 17, 10, 22));
      }
    }
    if (keyfile.empty()) keyfile = kDefaultKeyfile;
    for (const PassOptions* p : {&pass, &new_pass, &export_pass}) {
      if (p->file) {
        if (auto w = coffer::passphrase::LoosePermissions(*p->file)) {
          std::cerr << "coffer-keytool: warning: " << *w << "\n";
        }
      }
    }

    std::ostream& out = std::cout;
    if (*init) coffer::keytool::Init(keyfile, pass, kdf, out);
    else if (*show) coffer::keytool::Show(keyfile, out);
    else if (*verify) coffer::keytool::Verify(keyfile, pass, out);
    else if (*passwd) coffer::keytool::Passwd(keyfile, pass, new_pass, kdf, out);
    else if (*rotate) coffer::keytool::Rotate(keyfile, pass, out);
    else if (*exp) coffer::keytool::Export(keyfile, pass, out_file, export_pass, out);
    else if (*imp) coffer::keytool::Import(in_file, export_pass, keyfile, pass, kdf, out);
    else if (*curve) coffer::keytool::CurveKeygen(prefix, out);
    out.flush();
    return coffer::keytool::kExitOk;
  } catch (const coffer::config::ConfigError& e) {
    std::cerr << "coffer-keytool: " << e.what() << "\n";
    return coffer::exits::kConfig;
  } catch (const coffer::Error& e) {
    std::cerr << "coffer-keytool: " << e.what() << "\n";
    return coffer::keytool::ExitCodeFor(e);
  } catch (const std::exception& e) {
    std::cerr << "coffer-keytool: internal error: " << e.what() << "\n";
    return coffer::keytool::kExitSoftware;
  }
}
