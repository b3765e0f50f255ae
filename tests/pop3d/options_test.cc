// Tests for pop3d/options.cc and pop3d/control.cc: config keys, defaults, errors, and the
// play-dead control protocol.
#include <gtest/gtest.h>

#include "pop3d/control.h"
#include "pop3d/options.h"

namespace coffer::pop3d {
namespace {

TEST(OptionsTest, Defaults) {
  ServerOptions o = LoadServerOptions(config::Config::Empty());
  ASSERT_EQ(o.listen.size(), 1u);
  EXPECT_EQ(o.listen[0].host, "127.0.0.1");
  EXPECT_EQ(o.listen[0].port, 110);
  EXPECT_EQ(o.auth.mail_location, "/srv/mail/%d/%n/Maildir");
  EXPECT_EQ(o.idle_timeout, std::chrono::seconds(600));
  EXPECT_EQ(o.auth.maildrop.uidl, UidlMode::kMaildir);
  EXPECT_TRUE(o.auth.maildrop.mark_seen);
  EXPECT_FALSE(o.allow_plaintext);
  EXPECT_EQ(o.session.expire_days, -1);
  EXPECT_FALSE(o.auth.maildrop.shared_store);
  EXPECT_EQ(o.auth.maildrop.lease.duration, std::chrono::seconds(60));
  EXPECT_EQ(o.auth.maildrop.lease.settle, std::chrono::milliseconds(3000));
  EXPECT_NO_THROW(ValidateServerOptions(o));
}

TEST(OptionsTest, AllKeys) {
  auto c = config::Config::Parse(R"(
[listen]
plain = ["0.0.0.0:1110", "[::1]:1110"]
tls = ["*:1995"]
[tls]
certificate = "/c.pem"
key = "/k.pem"
[server]
user = "vmail"
threads = 4
auth_threads = 3
control_socket = "/run/p.sock"
[auth]
passwd_file = "/etc/p"
mail_location = "%h/Maildir"
allow_plaintext = true
failure_delay_ms = 10
failure_delay_max_ms = 20
[limits]
max_connections = 5
max_connections_per_ip = 2
idle_timeout = 30
max_line_length = 100
max_bad_commands = 4
max_failed_logins = 2
[pop3]
uidl = "dovecot"
mark_seen = false
login_delay = 60
expire = "NEVER"
implementation = ""
create_maildir = false
shared_store = true
lease_s = 20
lease_settle_ms = 5000
[log]
level = "debug"
syslog = true
)",
                                 "<test>");
  ServerOptions o = LoadServerOptions(c);
  ASSERT_EQ(o.listen.size(), 3u);
  EXPECT_EQ(o.listen[1].host, "::1");
  EXPECT_TRUE(o.listen[2].tls);
  EXPECT_EQ(o.listen[2].host, "0.0.0.0");
  EXPECT_EQ(o.listen[2].port, 1995);
  EXPECT_EQ(o.run_as, "vmail");
  EXPECT_EQ(o.threads, 4);
  EXPECT_EQ(o.max_connections_per_ip, 2u);
  EXPECT_EQ(o.session.max_failed_logins, 2);
  EXPECT_EQ(o.auth.maildrop.uidl, UidlMode::kDovecot);
  EXPECT_FALSE(o.auth.maildrop.mark_seen);
  EXPECT_FALSE(o.auth.maildrop.create);
  EXPECT_EQ(o.session.login_delay_s, 60);
  EXPECT_EQ(o.auth.login_delay, std::chrono::seconds(60));
  EXPECT_EQ(o.session.expire_days, -2);
  EXPECT_EQ(o.session.implementation, "");
  EXPECT_TRUE(o.auth.maildrop.shared_store);
  EXPECT_EQ(o.auth.maildrop.lease.duration, std::chrono::seconds(20));
  EXPECT_EQ(o.auth.maildrop.lease.settle, std::chrono::milliseconds(5000));
  EXPECT_NO_THROW(ValidateServerOptions(o));
}

TEST(OptionsTest, LeaseMustOutlastFourSettleTimes) {
  auto load = [](const char* text) {
    return LoadServerOptions(config::Config::Parse(text, "lease.toml"));
  };
  EXPECT_NO_THROW(load("[pop3]\nlease_s = 12\nlease_settle_ms = 3000\n"));
  try {
    load("[pop3]\nlease_s = 11\nlease_settle_ms = 3000\n");
    ADD_FAILURE() << "lease_s 11 with a settle time of 3 s accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("pop3.lease_s"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 times pop3.lease_settle_ms"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load("[pop3]\nlease_s = 4\n"), config::ConfigError);     // below 5
  EXPECT_THROW(load("[pop3]\nlease_s = 3601\n"), config::ConfigError);  // above 1 hour
  EXPECT_THROW(load("[pop3]\nlease_settle_ms = 99\n"), config::ConfigError);
  EXPECT_THROW(load("[pop3]\nshared_store = 1\n"), config::ConfigError);  // not a boolean
}

TEST(OptionsTest, Errors) {
  EXPECT_THROW(LoadServerOptions(config::Config::Parse("[pop3]\nuidl = \"x\"\n", "<t>")),
               config::ConfigError);
  EXPECT_THROW(LoadServerOptions(config::Config::Parse("[pop3]\ntypo = 1\n", "<t>")),
               config::ConfigError);
  EXPECT_THROW(LoadServerOptions(config::Config::Parse("[limits]\nidle_timeout = 0\n", "<t>")),
               config::ConfigError);
  EXPECT_THROW(LoadServerOptions(config::Config::Parse("[pop3]\nexpire = \"-3\"\n", "<t>")),
               config::ConfigError);
  ServerOptions o = LoadServerOptions(
      config::Config::Parse("[listen]\ntls = [\"127.0.0.1:995\"]\n", "<t>"));
  EXPECT_THROW(ValidateServerOptions(o), config::ConfigError);
  try {
    LoadServerOptions(config::Config::Parse("\n[pop3]\nuidl = \"x\"\n", "file.toml"));
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("file.toml:3"), std::string::npos) << e.what();
  }
}

TEST(OptionsTest, ListenAddresses) {
  EXPECT_EQ(ParseListenAddress("127.0.0.1:0", false).port, 0);
  EXPECT_THROW(ParseListenAddress("127.0.0.1", false), config::ConfigError);
  EXPECT_THROW(ParseListenAddress("127.0.0.1:", false), config::ConfigError);
  EXPECT_THROW(ParseListenAddress("127.0.0.1:70000", false), config::ConfigError);
  EXPECT_THROW(ParseListenAddress("127.0.0.1:1a", false), config::ConfigError);
}

TEST(ControlTest, PlayDeadModes) {
  Control c;
  EXPECT_EQ(HandleControlLine("play-dead refuse\n", c), "ok play-dead refuse");
  EXPECT_EQ(c.mode(), PlayDead::kRefuse);
  EXPECT_EQ(HandleControlLine("play-dead slow 250", c), "ok play-dead slow");
  EXPECT_EQ(c.mode(), PlayDead::kSlow);
  EXPECT_EQ(c.slow_delay(), std::chrono::milliseconds(250));
  EXPECT_EQ(HandleControlLine("play-dead stop", c), "ok play-dead stop");
  EXPECT_EQ(HandleControlLine("play-dead off", c), "ok play-dead off");
  EXPECT_EQ(c.mode(), PlayDead::kOff);
  EXPECT_EQ(HandleControlLine("status", c).rfind("ok mode=off connections=0", 0), 0u);
  EXPECT_EQ(HandleControlLine("play-dead slow x", c).rfind("error", 0), 0u);
  EXPECT_EQ(HandleControlLine("play-dead sideways", c).rfind("error", 0), 0u);
  EXPECT_EQ(HandleControlLine("", c).rfind("error", 0), 0u);
  EXPECT_EQ(c.mode(), PlayDead::kOff);
}

}  // namespace
}  // namespace coffer::pop3d
