// Tests of cofferfs option parsing (fs/options.h) and the play-dead protocol (fs/control.h).
#include "fs/options.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "fs/control.h"
#include "tests/support/subprocess.h"

namespace coffer::fs {
namespace {

TEST(OptionsTest, MountOptionStringsOverrideConfig) {
  testing::TempDir dir;
  testing::WriteTextFile(dir / "c.toml",
                         "keyfile = \"/etc/coffer/key\"\nsync = true\nentry_timeout = 5.0\n");
  MountOptions o;
  ApplyOptionStrings({"rw,config=" + (dir / "c.toml") + ",async", "allow_other,nofail,_netdev"},
                     &o);
  EXPECT_EQ(o.keyfile, "/etc/coffer/key");
  EXPECT_FALSE(o.sync);
  EXPECT_TRUE(o.allow_other);
  EXPECT_DOUBLE_EQ(o.entry_timeout, 5.0);
}

TEST(OptionsTest, ReaddirplusIsOnUnlessTurnedOff) {
  MountOptions o;
  EXPECT_TRUE(o.readdirplus);
  ApplyOptionStrings({"readdirplus=0"}, &o);
  EXPECT_FALSE(o.readdirplus);
  testing::TempDir dir;
  testing::WriteTextFile(dir / "c.toml", "readdirplus = true\n");
  ApplyOptionStrings({"config=" + (dir / "c.toml")}, &o);
  EXPECT_TRUE(o.readdirplus);
}

TEST(OptionsTest, UnknownOptionIsAnError) {
  MountOptions o;
  EXPECT_THROW(ApplyOptionStrings({"keyfile=/k,bogus"}, &o), Error);
  EXPECT_THROW(ApplyOptionStrings({"attr_timeout=fast"}, &o), Error);
}

TEST(OptionsTest, UnknownConfigKeyIsAnError) {
  testing::TempDir dir;
  testing::WriteTextFile(dir / "c.toml", "keyfiel = \"/k\"\n");
  MountOptions o;
  EXPECT_THROW(ApplyOptionStrings({"config=" + (dir / "c.toml")}, &o), config::ConfigError);
}

TEST(OptionsTest, StorageNodeOptions) {
  testing::TempDir dir;
  testing::WriteTextFile(dir / "c.toml",
                         "replicator = \"/etc/coffer/replicator.toml\"\ndegraded = \"queue\"\n"
                         "cache_limit_mb = 512\nscrub_interval_s = 60\n");
  MountOptions o;
  EXPECT_EQ(o.replicator, "");
  EXPECT_FALSE(o.degraded_queue);
  EXPECT_EQ(o.cache_limit_mb, 0u);
  ApplyOptionStrings({"config=" + (dir / "c.toml"), "tombstone_grace_s=10"}, &o);
  EXPECT_EQ(o.replicator, "/etc/coffer/replicator.toml");
  EXPECT_TRUE(o.degraded_queue);
  EXPECT_EQ(o.cache_limit_mb, 512u);
  EXPECT_EQ(o.scrub_interval_s, 60u);
  EXPECT_EQ(o.tombstone_grace_s, 10u);
  ApplyOptionStrings({"degraded=fail,cache_limit_mb=0"}, &o);
  EXPECT_FALSE(o.degraded_queue);
  EXPECT_EQ(o.cache_limit_mb, 0u);
  EXPECT_THROW(ApplyOptionStrings({"degraded=maybe"}, &o), Error);
  EXPECT_THROW(ApplyOptionStrings({"cache_limit_mb=-1"}, &o), Error);
  testing::WriteTextFile(dir / "bad.toml", "degraded = \"sometimes\"\n");
  EXPECT_THROW(ApplyOptionStrings({"config=" + (dir / "bad.toml")}, &o), config::ConfigError);
}

TEST(OptionsTest, ListenAddressesAreCheckedWhenParsed) {
  MountOptions o;
  EXPECT_EQ(o.health_listen, "");  // off by default
  ApplyOptionStrings({"health_listen=127.0.0.1:9404,metrics_listen=[::1]:9402"}, &o);
  EXPECT_EQ(o.health_listen, "127.0.0.1:9404");
  EXPECT_EQ(o.metrics_listen, "[::1]:9402");
  for (const char* bad : {"health_listen=localhost:9404", "health_listen=127.0.0.1",
                          "health_listen=127.0.0.1:70000", "metrics_listen=:9402"}) {
    MountOptions before = o;
    try {
      ApplyOptionStrings({bad}, &o);
      ADD_FAILURE() << bad << " accepted";
    } catch (const config::ConfigError&) {
      ADD_FAILURE() << bad << ": an -o option is a usage error, not a config file error";
    } catch (const Error& e) {
      EXPECT_EQ(e.err(), EINVAL);
      EXPECT_NE(std::string(e.what()).find("option " + std::string(bad) + ": "),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("numeric HOST:PORT"), std::string::npos) << e.what();
    }
    EXPECT_EQ(o.health_listen, before.health_listen);  // nothing changed
    EXPECT_EQ(o.metrics_listen, before.metrics_listen);
  }
  testing::TempDir dir;
  testing::WriteTextFile(dir / "c.toml", "health_listen = \"127.0.0.1:9500\"\n");
  ApplyOptionStrings({"config=" + (dir / "c.toml")}, &o);
  EXPECT_EQ(o.health_listen, "127.0.0.1:9500");
  testing::WriteTextFile(dir / "bad.toml", "health_listen = \"mail.example.org:80\"\n");
  try {
    ApplyOptionStrings({"config=" + (dir / "bad.toml")}, &o);
    ADD_FAILURE() << "a host name accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'health_listen'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.toml"), std::string::npos) << e.what();
  }
  EXPECT_EQ(o.health_listen, "127.0.0.1:9500");
}

TEST(ControlTest, Commands) {
  PlayDead pd;
  EXPECT_EQ(HandleControlCommand("status", &pd), "ok mode=normal delay_ms=0");
  EXPECT_EQ(HandleControlCommand("eio", &pd), "ok mode=eio");
  EXPECT_EQ(pd.mode.load(), PlayDead::kEio);
  EXPECT_EQ(HandleControlCommand("slow 250", &pd), "ok mode=slow delay_ms=250");
  EXPECT_EQ(pd.delay_ms.load(), 250);
  EXPECT_EQ(HandleControlCommand("slow -1", &pd).substr(0, 3), "err");
  EXPECT_EQ(HandleControlCommand("slow 99999999", &pd).substr(0, 3), "err");
  EXPECT_EQ(HandleControlCommand("normal", &pd), "ok mode=normal");
  EXPECT_EQ(HandleControlCommand("explode", &pd).substr(0, 3), "err");
}

TEST(ControlTest, SocketRoundTrip) {
  testing::TempDir dir;
  PlayDead pd;
  ControlServer server;
  server.Start(dir / "ctl.sock", &pd);
  EXPECT_EQ(ControlRequest(dir / "ctl.sock", "eio"), "ok mode=eio");
  EXPECT_EQ(ControlRequest(dir / "ctl.sock", "status"), "ok mode=eio delay_ms=0");
  server.Stop();
  EXPECT_THROW(ControlRequest(dir / "ctl.sock", "status"), Error);
}

}  // namespace
}  // namespace coffer::fs
