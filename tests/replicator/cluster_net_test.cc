// Integration tests of the replicator against 5 real coffer-node processes on 127.0.0.1, R=3,
// W=2: quorum writes through kill -9 and a second stopped node, scrub back to exactly
// R identical replicas, corrupt / silent / slow nodes, node-set changes, many threads at once.
//
// Object count: the 10,000 by default (about 20 s on 2 cores); COFFER_CLUSTER_OBJECTS
// overrides it for quick local runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <future>
#include <thread>

#include "common/crypto.h"
#include "common/error.h"
#include "replicator/replicator.h"
#include "replicator/store.h"
#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

using namespace std::chrono_literals;

int ObjectCount() {
  const char* env = std::getenv("COFFER_CLUSTER_OBJECTS");
  return env ? std::max(10, std::atoi(env)) : 10000;
}

class ClusterTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 5;

  void SetUp() override {
    keyring_.Add(1, crypto::GenerateMasterKey());
    box_keys_ = GenerateKeyPair();
    admin_keys_ = GenerateKeyPair();
    WriteKeyPair(dir_.path() + "/admin", admin_keys_);
    std::ofstream(dir_.path() + "/allowed") << box_keys_.public_key << "\n";
    for (int i = 0; i < kNodes + 1; ++i) AddNodeProcess();
    for (int i = 0; i < kNodes; ++i) nodes_[static_cast<std::size_t>(i)]->Start();
  }

  void TearDown() override {
    replicator_.reset();
    for (auto& n : nodes_) {
      if (HasFailure() && n->running()) {
        std::string log = n->Log();
        if (log.size() > 3000) log = log.substr(log.size() - 3000);
        std::cerr << "---- " << n->setup().node_id << " log tail:\n" << log;
      }
      n->Kill();
    }
  }

  void AddNodeProcess() {
    std::size_t i = nodes_.size();
    std::string name = "n" + std::to_string(i + 1);
    CurveKeyPair keys;
    auto s = testutil::NodeProcess::MakeSetup(dir_.path(), name, &keys);
    node_keys_.push_back(keys);
    nodes_.push_back(std::make_unique<testutil::NodeProcess>(s));
  }

  ReplicatorOptions Options(int node_count, const CurveKeyPair& keys) {
    ReplicatorOptions o;
    for (int i = 0; i < node_count; ++i) {
      const auto& n = *nodes_[static_cast<std::size_t>(i)];
      o.nodes.push_back({n.setup().node_id, n.endpoint(), node_keys_[static_cast<std::size_t>(i)].public_key});
    }
    o.client_keys = keys;
    o.replicas = 3;
    o.write_quorum = 2;
    o.write_timeout = 3000ms;
    o.read_timeout = 2000ms;
    o.hedge_delay = 30ms;
    o.admin_timeout = 5000ms;
    o.verifier = [this](const Object& claimed) {
      // The replicator alone: a chunk sealed at the claimed version, or an unsealed tombstone
      // (this test deletes with Replicator::Delete).
      if (claimed.tombstone && claimed.sealed.empty()) return Verdict::kGenuine;
      auto opened = crypto::OpenObject(keyring_, claimed.id, claimed.sealed);
      if (!opened) return Verdict::kCorrupt;
      return opened->version && opened->version->hlc == claimed.version.hlc &&
                     opened->version->box_id == claimed.version.box_id && !claimed.tombstone
                 ? Verdict::kGenuine
                 : Verdict::kForged;
    };
    return o;
  }

  Replicator& Connect(int node_count = kNodes) {
    replicator_ = std::make_unique<Replicator>(Options(node_count, box_keys_));
    WaitConnected(*replicator_);
    return *replicator_;
  }

  // Waits until every running node answers a STAT (connections are set up asynchronously).
  void WaitConnected(Replicator& r) {
    for (std::size_t i = 0; i < r.transport().size(); ++i) {
      if (!nodes_[i]->running()) continue;
      bool ok = false;
      for (int k = 0; k < 100 && !ok; ++k) {
        try {
          r.Stat(i);
          ok = true;
        } catch (const Error&) {
          std::this_thread::sleep_for(50ms);
        }
      }
      ASSERT_TRUE(ok) << "node " << i << " did not answer";
    }
  }

  Object MakeObject(std::uint64_t hlc, std::size_t size = 1024) {
    Object o;
    o.id = crypto::RandomObjectId();
    o.version = {hlc, 1};
    o.sealed = crypto::Seal(keyring_, crypto::ObjectKind::kChunk, o.id, 1, {hlc, 1},
                            crypto::primitives::RandomString(size));
    return o;
  }

  std::vector<Object> PutMany(Replicator& r, int count, std::uint64_t hlc) {
    std::vector<Object> all;
    for (int i = 0; i < count; ++i) all.push_back(MakeObject(hlc));
    for (std::size_t start = 0; start < all.size(); start += 200) {
      std::vector<Object> batch(all.begin() + static_cast<long>(start),
                                all.begin() + static_cast<long>(std::min(all.size(), start + 200)));
      PutResult res = r.Put(batch);
      EXPECT_TRUE(res.ok()) << res.error;
    }
    return all;
  }

  void SetPlayDead(std::size_t node, wire::PlayDeadMode mode, std::uint32_t slow_ms = 0) {
    Transport t({{"x", nodes_[node]->endpoint(), node_keys_[node].public_key}}, admin_keys_);
    wire::Request req;
    req.mutable_admin()->set_play_dead(mode);
    req.mutable_admin()->set_slow_ms(slow_ms);
    CallResult res;
    for (int i = 0; i < 100; ++i) {
      res = t.Call(0, req, 2000ms).get();
      if (res.status != CallStatus::kUnreachable) break;
      std::this_thread::sleep_for(30ms);
    }
    ASSERT_EQ(res.status, CallStatus::kOk);
  }

  // Every id listed on each node: id -> (node index -> (version, digest)).
  std::map<std::string, std::map<std::size_t, std::pair<Version, std::string>>> Census(
      Replicator& r) {
    std::map<std::string, std::map<std::size_t, std::pair<Version, std::string>>> out;
    for (std::size_t n = 0; n < r.transport().size(); ++n) {
      std::string after;
      while (true) {
        auto page = r.List(n, after);
        for (const auto& e : page.entries()) {
          out[e.id()][n] = {FromWire(e.version()), e.digest()};
        }
        if (page.done() || page.entries_size() == 0) break;
        after = page.entries(page.entries_size() - 1).id();
      }
    }
    return out;
  }

  // Every object sits on exactly its R replicas, with identical version and bytes.
  void ExpectExactlyOnReplicas(Replicator& r, std::size_t expected_objects) {
    auto census = Census(r);
    EXPECT_EQ(census.size(), expected_objects);
    std::size_t bad = 0;
    for (const auto& [id, holders] : census) {
      auto replicas = r.placement().Replicas(id, 3);
      std::set<std::size_t> want(replicas.begin(), replicas.end()), have;
      for (const auto& [n, v] : holders) have.insert(n);
      std::set<std::pair<Version, std::string>> copies;
      for (const auto& [n, v] : holders) copies.insert(v);
      if (want != have || copies.size() != 1) {
        if (++bad <= 3) {
          std::string w, h;
          for (auto n : want) w += std::to_string(n) + " ";
          for (auto n : have) h += std::to_string(n) + " ";
          ADD_FAILURE() << "object " << crypto::ToHex(id) << ": replicas " << w << "held by " << h
                        << "distinct copies " << copies.size();
        }
      }
    }
    EXPECT_EQ(bad, 0u);
  }

  testutil::TempDir dir_;
  crypto::Keyring keyring_;
  CurveKeyPair box_keys_, admin_keys_;
  std::vector<CurveKeyPair> node_keys_;
  std::vector<std::unique_ptr<testutil::NodeProcess>> nodes_;
  std::unique_ptr<Replicator> replicator_;
};

TEST_F(ClusterTest, QuorumThroughFailuresThenScrubRestoresExactlyR) {
  Replicator& r = Connect();
  const int count = ObjectCount();
  auto objects = PutMany(r, count, 1);

  // kill -9 one node: every read and every write still succeeds.
  nodes_[0]->Kill(SIGKILL);
  std::size_t read_ok = 0;
  for (const auto& o : objects) {
    GetResult g = r.Get(o.id);
    if (g.status == GetStatus::kFound && g.object.sealed == o.sealed) ++read_ok;
  }
  EXPECT_EQ(read_ok, objects.size());
  auto during_one_down = PutMany(r, count / 4, 2);

  // Stop a second node: writes whose replicas include both fail with a clear error.
  EXPECT_EQ(nodes_[1]->Stop(), 0);
  std::vector<Object> probe;
  for (int i = 0; i < 300; ++i) probe.push_back(MakeObject(3));
  std::size_t expected_fail = 0, stored = 0, failed = 0;
  for (const auto& o : probe) {
    auto reps = r.placement().Replicas(std::string(crypto::IdBytes(o.id)), 3);
    bool both = std::count(reps.begin(), reps.end(), 0u) && std::count(reps.begin(), reps.end(), 1u);
    expected_fail += both ? 1 : 0;
    PutResult res = r.Put({o});
    if (res.ok()) {
      ++stored;
      EXPECT_FALSE(both);
    } else {
      ++failed;
      EXPECT_TRUE(both) << res.error;
      EXPECT_NE(res.error.find("W=2 not met"), std::string::npos) << res.error;
      EXPECT_NE(res.error.find("node n"), std::string::npos) << res.error;
      EXPECT_FALSE(res.stored[0]);
    }
  }
  EXPECT_GT(expected_fail, 0u);
  EXPECT_EQ(failed, expected_fail);
  EXPECT_EQ(stored + failed, probe.size());
  // Reads of what was acknowledged still succeed with two nodes down, except where all three
  // replicas... cannot be: R - W = 1, so an acknowledged object has a copy on a live node
  // unless both down nodes held it; then its third replica (acked) is still up.
  std::size_t reads = 0;
  for (const auto& o : during_one_down) reads += r.Get(o.id).status == GetStatus::kFound;
  EXPECT_EQ(reads, during_one_down.size());

  // Restart both, scrub: every object (including the partly written ones) on exactly R nodes.
  nodes_[0]->Start();
  nodes_[1]->Start();
  WaitConnected(r);
  std::uint64_t last_total = 0;
  ScrubReport report =
      r.Scrub([&](std::uint64_t, std::uint64_t total) { last_total = total; }, true);
  EXPECT_EQ(report.unreachable, 0u);
  EXPECT_EQ(report.unrecoverable, 0u);
  EXPECT_GT(report.repaired, 0u);
  EXPECT_EQ(last_total, report.checked);
  ExpectExactlyOnReplicas(r, objects.size() + during_one_down.size() + probe.size());
  // A second scrub finds nothing to do.
  ScrubReport again = r.Scrub();
  EXPECT_EQ(again.repaired, 0u);
  EXPECT_EQ(again.moved, 0u);
}

TEST_F(ClusterTest, CorruptNodeReadsStayCorrectAndBadReplicaIsRepaired) {
  Replicator& r = Connect();
  auto objects = PutMany(r, 300, 1);
  SetPlayDead(2, wire::PLAY_DEAD_CORRUPT);
  for (const auto& o : objects) {
    GetResult g = r.Get(o.id);
    ASSERT_EQ(g.status, GetStatus::kFound);
    ASSERT_EQ(g.object.sealed, o.sealed);
  }
  auto stats = r.stats();
  EXPECT_GT(stats.verify_failures, 0u);
  EXPECT_GT(stats.repairs_sent, 0u);
  SetPlayDead(2, wire::PLAY_DEAD_OFF);

  // A replica that really holds rotten bytes at rest (same version) is found by scrub and
  // rewritten with the verified copy.
  const Object& victim = objects.front();
  auto reps = r.placement().Replicas(std::string(crypto::IdBytes(victim.id)), 3);
  {
    Object rotten = victim;
    rotten.sealed[rotten.sealed.size() / 2] ^= 1;
    wire::Request req;
    auto* w = req.mutable_put()->add_objects();
    w->set_id(std::string(crypto::IdBytes(rotten.id)));
    ToWire(rotten.version, w->mutable_version());
    w->set_sealed(rotten.sealed);
    w->set_repair(true);  // same version, different bytes
    auto res = r.transport().Call(reps[0], req, 2000ms).get();
    ASSERT_EQ(res.status, CallStatus::kOk);
    ASSERT_EQ(res.reply.put().results(0).status(), wire::PUT_STORED);
  }
  ScrubReport report = r.Scrub();
  EXPECT_EQ(report.repaired, 1u);
  EXPECT_EQ(report.unrecoverable, 0u);
  ExpectExactlyOnReplicas(r, objects.size());
  wire::Request get;
  get.mutable_get()->add_ids(std::string(crypto::IdBytes(victim.id)));
  auto res = r.transport().Call(reps[0], get, 2000ms).get();
  ASSERT_EQ(res.status, CallStatus::kOk);
  EXPECT_EQ(res.reply.get().results(0).object().sealed(), victim.sealed);
}

// Reading the newest version of an object (catch-up, min-version reads) needs R-W+1 replicas to
// answer. A replica whose copy does not authenticate has not answered: with a stale replica
// beside it, it must not make the stale version pass for the newest (a deleted message would
// come back).
TEST_F(ClusterTest, ACorruptCopyIsNoAnswerWhenReadingTheNewestVersion) {
  Replicator& r = Connect();
  Object old = MakeObject(10), fresh = MakeObject(20);
  fresh.id = old.id;
  fresh.sealed = crypto::Seal(keyring_, crypto::ObjectKind::kChunk, old.id, 1, {20, 1},
                              crypto::primitives::RandomString(512));
  const auto reps = r.placement().Replicas(std::string(crypto::IdBytes(old.id)), 3);
  auto put = [&](std::size_t node, const Object& o) {
    wire::Request req;
    auto* w = req.mutable_put()->add_objects();
    w->set_id(std::string(crypto::IdBytes(o.id)));
    ToWire(o.version, w->mutable_version());
    w->set_sealed(o.sealed);
    auto res = r.transport().Call(node, req, 2000ms).get();
    ASSERT_EQ(res.status, CallStatus::kOk);
    ASSERT_EQ(res.reply.put().results(0).status(), wire::PUT_STORED);
  };
  put(reps[0], old);    // a replica that missed the newer version
  put(reps[1], fresh);  // the newer version on W=2 replicas
  put(reps[2], fresh);
  auto read_newest = [&] {
    std::promise<GetResult> p;
    auto f = p.get_future();
    r.ReadNewestAsync(old.id, {}, [&p](GetResult&& g) { p.set_value(std::move(g)); });
    return f.get();
  };
  SetPlayDead(reps[1], wire::PLAY_DEAD_CORRUPT);
  SetPlayDead(reps[2], wire::PLAY_DEAD_SILENT);
  GetResult g = read_newest();
  EXPECT_NE(g.status, GetStatus::kFound) << "the stale version passed for the newest";
  EXPECT_EQ(g.status, GetStatus::kUnavailable) << g.error;
  SetPlayDead(reps[1], wire::PLAY_DEAD_OFF);
  g = read_newest();
  ASSERT_EQ(g.status, GetStatus::kFound) << g.error;
  EXPECT_EQ(g.object.version, fresh.version);
  SetPlayDead(reps[2], wire::PLAY_DEAD_OFF);
}

TEST_F(ClusterTest, ReadRepairsMissingReplica) {
  Replicator& r = Connect();
  nodes_[3]->Kill(SIGKILL);
  auto objects = PutMany(r, 200, 1);  // node 3's share went to the other two replicas only
  nodes_[3]->Start();
  WaitConnected(r);
  // Where node 3 is the first replica asked, it answers "missing": the read fails over to the
  // next replica and then writes the object back to node 3 in the background.
  for (const auto& o : objects) ASSERT_EQ(r.Get(o.id).status, GetStatus::kFound);
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(r.stats().repairs_sent, 0u);
  auto st = r.Stat(3);
  EXPECT_GT(st.objects(), 0u);
}

TEST_F(ClusterTest, SilentAndSlowNodesDoNotStallReads) {
  Replicator& r = Connect();
  auto objects = PutMany(r, 200, 1);
  for (auto mode : {wire::PLAY_DEAD_SILENT, wire::PLAY_DEAD_SLOW}) {
    SetPlayDead(4, mode, 1500);
    SetPlayDead(1, mode, 1500);
    auto worst = std::chrono::steady_clock::duration::zero();
    for (const auto& o : objects) {
      auto start = std::chrono::steady_clock::now();
      GetResult g = r.Get(o.id);
      worst = std::max(worst, std::chrono::steady_clock::now() - start);
      ASSERT_EQ(g.status, GetStatus::kFound);
      ASSERT_EQ(g.object.sealed, o.sealed);
    }
    // Two of the three replicas may be playing dead: two hedge delays (30 ms each) plus the
    // round trip, far below the 1.5 s delay or the 2 s timeout.
    std::cout << "play-dead " << (mode == wire::PLAY_DEAD_SILENT ? "silent" : "slow 1500")
              << " on 2 nodes: worst read "
              << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count() << " ms\n";
    EXPECT_LT(worst, 1000ms) << "mode " << mode;
    SetPlayDead(4, wire::PLAY_DEAD_OFF);
    SetPlayDead(1, wire::PLAY_DEAD_OFF);
  }
  EXPECT_GT(r.stats().hedges_sent, 0u);
}

TEST_F(ClusterTest, RefusingNodeCountsAsFailedReplica) {
  Replicator& r = Connect();
  SetPlayDead(0, wire::PLAY_DEAD_REFUSE);
  auto objects = PutMany(r, 100, 1);  // W=2 of the other two replicas
  for (const auto& o : objects) ASSERT_EQ(r.Get(o.id).status, GetStatus::kFound);
  SetPlayDead(3, wire::PLAY_DEAD_REFUSE);
  std::size_t failed = 0;
  for (int i = 0; i < 100; ++i) {
    Object o = MakeObject(2);
    auto reps = r.placement().Replicas(std::string(crypto::IdBytes(o.id)), 3);
    bool both = std::count(reps.begin(), reps.end(), 0u) && std::count(reps.begin(), reps.end(), 3u);
    PutResult res = r.Put({o});
    EXPECT_EQ(res.ok(), !both) << res.error;
    if (!res.ok()) {
      ++failed;
      EXPECT_NE(res.error.find("playing dead"), std::string::npos) << res.error;
    }
  }
  EXPECT_GT(failed, 0u);
}

TEST_F(ClusterTest, AddingANodeAndScrubMovesOnlyWhatMust) {
  {
    Replicator& four = Connect(4);
    PutMany(four, 600, 1);
  }
  replicator_.reset();
  nodes_[5]->Start();  // index 5 is the spare: make it node 5 of a 5-node set
  std::swap(nodes_[4], nodes_[5]);
  std::swap(node_keys_[4], node_keys_[5]);
  Replicator& five = Connect(5);
  ScrubReport report = five.Scrub();
  EXPECT_EQ(report.checked, 600u);
  EXPECT_EQ(report.unrecoverable, 0u);
  // Each object gains the new node with probability 3/5: moved objects are those.
  EXPECT_NEAR(static_cast<double>(report.moved) / 600, 3.0 / 5, 0.08);
  ExpectExactlyOnReplicas(five, 600);
  auto st = five.Stat(4);
  EXPECT_NEAR(static_cast<double>(st.objects()), 600 * 3.0 / 5, 60);
}

TEST_F(ClusterTest, HintedHandoffKeepsWritesGoingAndDeliversWhenOwnersReturn) {
  auto options = Options(kNodes, box_keys_);
  options.hinted_handoff = true;
  options.hint_replay_interval = 200ms;
  replicator_ = std::make_unique<Replicator>(options);
  Replicator& r = *replicator_;
  WaitConnected(r);
  nodes_[0]->Kill(SIGKILL);
  nodes_[1]->Kill(SIGKILL);
  // With two of five nodes down every write still finds W=2 nodes: its live replicas plus
  // fallback nodes holding hints.
  auto objects = PutMany(r, 300, 1);
  auto st = r.stats();
  EXPECT_GT(st.hints_stored, 0u);
  EXPECT_EQ(st.hints_replayed, 0u);
  for (const auto& o : objects) ASSERT_EQ(r.Get(o.id).status, GetStatus::kFound);
  nodes_[0]->Start();
  nodes_[1]->Start();
  WaitConnected(r);
  for (int i = 0; i < 150 && r.stats().hints_pending > 0; ++i) std::this_thread::sleep_for(100ms);
  st = r.stats();
  EXPECT_EQ(st.hints_pending, 0u);
  EXPECT_EQ(st.hints_replayed, st.hints_stored);
  // Delivered and dropped from the fallbacks: exactly R copies without a scrub.
  ExpectExactlyOnReplicas(r, objects.size());
}

TEST_F(ClusterTest, ManyThreadsPutGetDeleteAndFeed) {
  Replicator& r = Connect();
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<Object>> per_thread(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        Object o = MakeObject(static_cast<std::uint64_t>(10 + i), 4096);
        if (!r.Put({o}).ok()) ++errors;
        GetResult g = r.Get(o.id);
        if (g.status != GetStatus::kFound || g.object.sealed != o.sealed) ++errors;
        per_thread[static_cast<std::size_t>(t)].push_back(std::move(o));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  const Object& gone = per_thread[0][0];
  ASSERT_TRUE(r.Delete(gone.id, {100, 1}).ok());
  // The delete is on W of R replicas when it returns; a plain Get takes the first replica that
  // answers, which may be the third one a moment before the tombstone lands there. Reading
  // one's own write asks for at least its version.
  auto get_at_least = [&](const crypto::ObjectId& id, Version v) {
    std::promise<GetResult> p;
    auto f = p.get_future();
    r.GetAsync(id, [&p](GetResult&& res) { p.set_value(std::move(res)); }, v);
    return f.get();
  };
  GetResult g = get_at_least(gone.id, {100, 1});
  ASSERT_EQ(g.status, GetStatus::kFound);
  EXPECT_TRUE(g.object.tombstone);
  // A stale write after the delete does not bring it back.
  ASSERT_TRUE(r.Put({gone}).ok());  // acked as "not newer"
  EXPECT_TRUE(get_at_least(gone.id, {100, 1}).object.tombstone);
  EXPECT_EQ(r.Get(crypto::RandomObjectId()).status, GetStatus::kNotFound);
  // The feed of a replica shows the tombstone last.
  auto reps = r.placement().Replicas(std::string(crypto::IdBytes(gone.id)), 3);
  auto feed = r.Feed(reps[0], 0);
  ASSERT_GT(feed.entries_size(), 0);
  EXPECT_EQ(feed.entries(feed.entries_size() - 1).id(), std::string(crypto::IdBytes(gone.id)));
  EXPECT_TRUE(feed.entries(feed.entries_size() - 1).tombstone());
  EXPECT_EQ(feed.last_seq(), feed.entries(feed.entries_size() - 1).seq());
}

}  // namespace
}  // namespace coffer::replicator
