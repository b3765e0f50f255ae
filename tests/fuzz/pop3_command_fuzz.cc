// libFuzzer target for the POP3 command parser and session state machine (coffer-pop3d).
//
// The input is split into lines and fed to a Session exactly as the server would: every login
// request succeeds with a small real Maildir (re-created when QUIT deleted from it), so the
// fuzzer reaches the TRANSACTION-state commands too; bodies are streamed to the end. Checks:
// no crash, no sanitizer report, every reply is CRLF-terminated and starts with "+" or "-ERR".
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "pop3d/command.h"
#include "pop3d/maildrop.h"
#include "pop3d/session.h"

namespace {

const std::string& Maildir() {
  static const std::string dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "pop3_fuzz.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    return templ + "/Maildir";
  }();
  return dir;
}

void Populate() {
  const std::string& md = Maildir();
  std::filesystem::create_directories(md + "/new");
  std::filesystem::create_directories(md + "/cur");
  std::filesystem::create_directories(md + "/tmp");
  const char* messages[] = {"Subject: a\n\n.dot\nbody\n", "Subject: b\r\n\r\nx", ""};
  for (int i = 0; i < 3; ++i) {
    std::string path = md + "/cur/100" + std::to_string(i) + ".fuzz";
    if (!std::filesystem::exists(path)) std::ofstream(path, std::ios::binary) << messages[i];
  }
}

void CheckReply(const std::string& text) {
  if (text.empty()) return;
  if (text.size() < 2 || text.compare(text.size() - 2, 2, "\r\n") != 0) std::abort();
  if (text[0] != '+' && text.rfind("-ERR", 0) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Populate();
  coffer::pop3d::SessionOptions options;
  options.plaintext_ok = (size % 2) == 0;
  options.tls_available = true;
  options.max_bad_commands = 1000;
  options.max_failed_logins = 1000;
  options.chunk_size = 7;
  coffer::pop3d::MaildropLocks locks;  // outlives the session's maildrop
  coffer::pop3d::Session session(options);
  coffer::pop3d::MaildropOptions md_options;
  md_options.mark_seen = (size % 3) == 0;
  std::size_t pos = 0;
  while (pos < input.size()) {
    std::size_t nl = input.find('\n', pos);
    if (nl == std::string_view::npos) nl = input.size();
    std::string_view line = input.substr(pos, nl - pos);
    pos = nl + 1;
    (void)coffer::pop3d::ParseCommand(line);
    coffer::pop3d::Reply reply = line.size() > 512 ? session.OnOverlongLine() : session.OnLine(line);
    if (reply.login) {
      coffer::pop3d::LoginResult result;
      if (reply.login->password == "ok") {
        auto opened = coffer::pop3d::Maildrop::Open(Maildir(), md_options, nullptr, locks);
        result.status = opened.status == coffer::pop3d::OpenStatus::kOk
                            ? coffer::pop3d::LoginStatus::kOk
                            : coffer::pop3d::LoginStatus::kTempFail;
        result.maildrop = std::move(opened.maildrop);
      } else {
        result.status = coffer::pop3d::LoginStatus::kBadCredentials;
      }
      reply = session.CompleteLogin(std::move(result));
    }
    CheckReply(reply.text);
    if (reply.body) {
      std::string chunk, all;
      while (reply.body->Next(chunk)) all += chunk;
      if (all.size() < 3 || all.compare(all.size() - 3, 3, ".\r\n") != 0) std::abort();
      session.BodySent();
    }
    if (reply.start_tls) session.TlsStarted();
    if (reply.close) break;
  }
  return 0;
}
