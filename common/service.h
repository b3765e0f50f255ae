// Talking to the service manager: sd_notify(3) READY/RELOADING/STOPPING/STATUS for Type=notify
// units, and whether stderr is connected to the journal.
//
// Every function is a no-op outside systemd (no $NOTIFY_SOCKET), so programs call them
// unconditionally. Thread-safe.
#pragma once

#include <string_view>

namespace coffer::service {

// The service is up (listening, mounted); `status` is shown by `systemctl status`.
void Ready(std::string_view status);
// A SIGHUP reload started; call Ready() again when it is done.
void Reloading();
// Shutting down.
void Stopping();
// A one-line status for `systemctl status`.
void Status(std::string_view status);

// True when stderr is the journal's stream (systemd sets $JOURNAL_STREAM to its device:inode):
// then log lines need no timestamp, and syslog would only duplicate them.
bool StderrIsJournal();

}  // namespace coffer::service
