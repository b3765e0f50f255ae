// See service.h.
#include "common/service.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace coffer::service {
namespace {

void Send(const std::string& text) { (void)sd_notify(0, text.c_str()); }

std::string Clean(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  return out;
}

}  // namespace

void Ready(std::string_view status) { Send("READY=1\nSTATUS=" + Clean(status)); }
void Reloading() { Send("RELOADING=1\nSTATUS=reloading"); }
void Stopping() { Send("STOPPING=1\nSTATUS=stopping"); }
void Status(std::string_view status) { Send("STATUS=" + Clean(status)); }

bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace coffer::service
