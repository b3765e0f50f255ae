// Unit tests of what `cofferctl status` makes of a status line (ctl/status.h) and of finding a
// mount's control socket from any path inside it (ctl/target.h).
#include "common/error.h"
#include "ctl/status.h"
#include "ctl/target.h"
#include "tests/ctl/run_ctl.h"
#include "tests/support/subprocess.h"

#include <gtest/gtest.h>

#include <sstream>

namespace coffer::ctl {
namespace {

const std::string kHealthy =
    "ok mode=normal delay_ms=0 replicated=yes nodes=3 nodes_up=3 R=3 W=2 degraded=fail "
    "state=healthy outbox=0 outbox_age_s=0 cache_bytes=0 cache_limit=0 cached_chunks=0 "
    "evicted=0 fetched=0 under_replicated=0 last_scrub_unix=0 scrubbing=no scrub_checked=0 "
    "scrub_repaired=0 scrub_collected=0 scrub_unreachable=0 scrub_unrecoverable=0 "
    "node.n1=up/0.100ms node.n2=up/0.200ms node.n3=up/0.300ms manual_scrub_unix=0";

std::string With(std::string line, const std::string& from, const std::string& to) {
  line.replace(line.find(from), from.size(), to);
  return line;
}

TEST(StatusTest, HealthyOnlyWhenEverythingIsThere) {
  Verdict v = Judge(ParseFields(kHealthy));
  EXPECT_EQ(v.code, kStatusHealthy);
  EXPECT_TRUE(v.reasons.empty());
  EXPECT_EQ(Judge(ParseFields("ok mode=normal delay_ms=0 replicated=no")).code, kStatusHealthy);
}

TEST(StatusTest, ANodeDownIsDegradedEvenWithNothingUnderReplicated) {
  std::string line = With(With(kHealthy, "node.n2=up/0.200ms", "node.n2=down"), "nodes_up=3",
                          "nodes_up=2");
  Verdict v = Judge(ParseFields(line));
  EXPECT_EQ(v.code, kStatusDegraded);
  ASSERT_EQ(v.reasons.size(), 1u);
  EXPECT_EQ(v.reasons[0], "node n2 down");
}

TEST(StatusTest, OutboxAndObjectsBelowRAreDegraded) {
  Verdict v = Judge(ParseFields(With(With(kHealthy, "outbox=0", "outbox=4"), "under_replicated=0",
                                     "under_replicated=7")));
  EXPECT_EQ(v.code, kStatusDegraded);
  ASSERT_EQ(v.reasons.size(), 2u);
  EXPECT_NE(v.reasons[0].find("4 changes in the outbox"), std::string::npos);
  EXPECT_EQ(v.reasons[1], "7 objects below R");
}

TEST(StatusTest, FewerThanWNodesIsNotServingUnlessQueueing) {
  std::string line = With(With(With(kHealthy, "node.n1=up/0.100ms", "node.n1=down"),
                               "node.n2=up/0.200ms", "node.n2=down"),
                          "nodes_up=3", "nodes_up=1");
  EXPECT_EQ(Judge(ParseFields(line)).code, kStatusNotServing);
  EXPECT_EQ(Judge(ParseFields(With(line, "degraded=fail", "degraded=queue"))).code,
            kStatusDegraded);
  EXPECT_EQ(Judge(ParseFields(With(kHealthy, "mode=normal", "mode=eio"))).code, kStatusNotServing);
}

TEST(StatusTest, AStickyWriteErrorIsNotServingAlsoWithoutNodes) {
  const std::string local = "ok mode=normal delay_ms=0 replicated=no";
  for (const std::string& line : {kHealthy, local}) {
    Verdict v = Judge(ParseFields(line + " sticky_error=28"));
    EXPECT_EQ(v.code, kStatusNotServing) << line;
    ASSERT_EQ(v.reasons.size(), 1u);
    EXPECT_EQ(v.reasons[0],
              "sticky write error (No space left on device): every write fails until cofferfs is "
              "restarted");
    EXPECT_EQ(Judge(ParseFields(line + " sticky_error=0")).code, kStatusHealthy);
  }
}

TEST(StatusTest, LyingNodeIsShownAndDegrades) {
  std::string line = kHealthy + " lies.n3=5";
  Fields f = ParseFields(line);
  Verdict v = Judge(f);
  EXPECT_EQ(v.code, kStatusDegraded);
  std::ostringstream text;
  RenderText(f, v, std::nullopt, text);
  EXPECT_NE(text.str().find("n3        up    0.300ms  LYING (5 forged or rolled-back replies)"),
            std::string::npos)
      << text.str();
  std::ostringstream json;
  RenderJson(f, v, std::nullopt, json);
  EXPECT_NE(json.str().find("\"n3\":{\"state\":\"up\",\"rtt_ms\":0.300,\"lies\":5}"),
            std::string::npos)
      << json.str();
  EXPECT_NE(json.str().find("\"status\":\"degraded\",\"exit_code\":1"), std::string::npos);
}

TEST(StatusTest, JsonKeepsUnknownFieldsAndEscapes) {
  Fields f = ParseFields(kHealthy + " future_field=abc quota.bytes=12 last_error=a \"b\"");
  std::ostringstream json;
  RenderJson(f, Judge(f), std::nullopt, json);
  EXPECT_NE(json.str().find("\"future_field\":\"abc\""), std::string::npos) << json.str();
  EXPECT_NE(json.str().find("\"quota.bytes\":12"), std::string::npos);
  EXPECT_NE(json.str().find("\"last_error\":\"a \\\"b\\\"\""), std::string::npos);
}

TEST(StatusTest, ManualScrubsAreShown) {
  std::string line = With(With(kHealthy, "last_scrub_unix=0", "last_scrub_unix=1800000000"),
                          "manual_scrub_unix=0", "manual_scrub_unix=1800000000");
  Fields f = ParseFields(line);
  ScrubRecord rec;
  rec.unix_time = 1800000100;
  rec.config = "/etc/coffer/replicator.toml";
  rec.checked = 9;
  auto parsed = ParseScrubRecord(FormatScrubRecord(rec));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->checked, 9u);
  std::ostringstream text;
  RenderText(f, Judge(f), parsed, text);
  EXPECT_NE(text.str().find("last scrub  2027-01-15 08:00:00 UTC (manual)"), std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("last cofferctl scrub  2027-01-15 08:01:40 UTC "
                            "(/etc/coffer/replicator.toml): checked 9"),
            std::string::npos)
      << text.str();
}

TEST(TargetTest, AnyPathInsideAMountLeadsToItsStateDir) {
  coffer::testing::TempDir dir;
  std::string mnt = dir / "mnt";
  ::mkdir(mnt.c_str(), 0755);
  ::mkdir((mnt + "/alice").c_str(), 0755);
  std::string mountinfo = dir / "mountinfo";
  coffer::testing::WriteTextFile(
      mountinfo,
      "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
      "90 22 0:50 / " + mnt + " rw,nosuid - fuse.cofferfs /var/lib/coffer/st\\040x rw\n"
      "91 22 0:51 / " + dir.path() + " rw - fuse.other /x rw\n");
  EXPECT_EQ(ResolveControlSocket(mnt, mountinfo), "/var/lib/coffer/st x/control.sock");
  EXPECT_EQ(ResolveControlSocket(mnt + "/alice", mountinfo), "/var/lib/coffer/st x/control.sock");
  EXPECT_THROW(ResolveControlSocket(dir.path(), mountinfo), coffer::Error);
}

TEST(StatusTest, NothingListeningIsNotServing) {
  auto r = testing::RunCtl({"status", "/nonexistent/coffer/mount"});
  EXPECT_EQ(r.rc, kStatusNotServing);
  EXPECT_NE(r.out.find("NOT SERVING"), std::string::npos);
  r = testing::RunCtl({"status", "--json", "/nonexistent/coffer/mount"});
  EXPECT_EQ(r.rc, kStatusNotServing);
  EXPECT_NE(r.out.find("\"status\":\"not_serving\""), std::string::npos);
  EXPECT_EQ(testing::RunCtl({"--version"}).out.rfind("cofferctl ", 0), 0u);
}

}  // namespace
}  // namespace coffer::ctl
