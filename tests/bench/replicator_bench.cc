// Replicator benchmark: replicated PUT and GET of 4 KiB and 256 KiB sealed objects at
// R=3, W=2 over loopback against 5 real coffer-node processes, beside a plain single-process
// LMDB put (one durable commit each) and get of the same objects measured in the same run.
// Prints ops/s, MB/s, p50 and p99 latency and the ratios replicated / LMDB.
//
// Usage: replicator_bench [--objects-4k N] [--objects-256k N] [--threads T]
// Needs COFFER_NODE (the coffer-node binary); tests/bench/replicator_bench.sh sets it.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/error.h"
#include "common/lmdb.h"
#include "replicator/replicator.h"
#include "tests/replicator/test_util.h"

namespace {

using namespace coffer;
using namespace coffer::replicator;
using Clock = std::chrono::steady_clock;

struct Stats {
  double ops_per_s = 0, mb_per_s = 0, p50_us = 0, p99_us = 0;
};

Stats Summarise(std::vector<double> lat_us, double wall_s, std::size_t bytes_each) {
  std::sort(lat_us.begin(), lat_us.end());
  Stats s;
  s.ops_per_s = static_cast<double>(lat_us.size()) / wall_s;
  s.mb_per_s = s.ops_per_s * static_cast<double>(bytes_each) / 1e6;
  s.p50_us = lat_us[lat_us.size() / 2];
  s.p99_us = lat_us[std::min(lat_us.size() - 1, lat_us.size() * 99 / 100)];
  return s;
}

// Runs fn(i) for i in [0, n) on `threads` threads; returns per-op latencies and wall time.
template <class F>
std::pair<std::vector<double>, double> Measure(std::size_t n, int threads, F fn) {
  std::vector<double> lat(n);
  std::atomic<std::size_t> next{0};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < n;) {
        auto t0 = Clock::now();
        fn(i);
        lat[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      }
    });
  }
  for (auto& th : pool) th.join();
  return {lat, std::chrono::duration<double>(Clock::now() - start).count()};
}

void Row(const char* what, const Stats& s, const Stats* base) {
  std::printf("%-34s %10.0f %9.1f %10.0f %10.0f", what, s.ops_per_s, s.mb_per_s, s.p50_us,
              s.p99_us);
  if (base) {
    std::printf("   x%.3f ops  x%.1f p50", s.ops_per_s / base->ops_per_s, s.p50_us / base->p50_us);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n4k = 2000, n256k = 200;
  int threads = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--objects-4k")) n4k = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--objects-256k")) n256k = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  testutil::TempDir dir;
  crypto::Keyring keyring;
  keyring.Add(1, crypto::GenerateMasterKey());
  auto box = GenerateKeyPair();
  std::ofstream(dir.path() + "/allowed") << box.public_key << "\n";
  std::vector<std::unique_ptr<testutil::NodeProcess>> nodes;
  ReplicatorOptions options;
  for (int i = 0; i < 5; ++i) {
    std::string name = "n" + std::to_string(i + 1);
    auto keys = GenerateKeyPair();
    WriteKeyPair(dir.path() + "/" + name, keys);
    testutil::NodeProcess::Setup s;
    s.node_id = name;
    s.dir = dir.path() + "/" + name;
    s.port = testutil::FreePort();
    s.secret_key_file = dir.path() + "/" + name + ".key_secret";
    s.allowed_keys_file = dir.path() + "/allowed";
    s.log_level = "warn";
    nodes.push_back(std::make_unique<testutil::NodeProcess>(s));
    nodes.back()->Start();
    options.nodes.push_back({name, nodes.back()->endpoint(), keys.public_key});
  }
  options.client_keys = box;
  options.replicas = 3;
  options.write_quorum = 2;
  options.verifier = [&keyring](const Object& claimed) {
    auto opened = crypto::OpenObject(keyring, claimed.id, claimed.sealed);
    return opened && opened->version &&
                   opened->version->hlc == claimed.version.hlc &&
                   opened->version->box_id == claimed.version.box_id
               ? Verdict::kGenuine
               : Verdict::kCorrupt;
  };
  Replicator replicator(options);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    for (int k = 0; k < 100; ++k) {
      try {
        replicator.Stat(i);
        break;
      } catch (const Error&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
    }
  }

  std::filesystem::create_directories(dir.path() + "/baseline");
  lmdb::Env env = lmdb::Env::Open(dir.path() + "/baseline");
  lmdb::Dbi dbi = [&] {
    auto txn = lmdb::Txn::BeginWrite(env);
    auto d = lmdb::Dbi::Open(txn, nullptr, 0);
    txn.Commit();
    return d;
  }();

  std::printf("replicator benchmark: 5 coffer-node processes on 127.0.0.1, R=3 W=2, CURVE, "
              "GCM verify on read; baseline: one process, LMDB, one durable commit per put\n");
  std::printf("%-34s %10s %9s %10s %10s   %s\n", "", "ops/s", "MB/s", "p50 us", "p99 us",
              "ratio to LMDB");
  std::uint64_t hlc = 1;
  for (auto [size, count] : {std::pair<std::size_t, std::size_t>{4096, n4k}, {262144, n256k}}) {
    std::vector<Object> objs(count);
    for (auto& o : objs) {
      o.id = crypto::RandomObjectId();
      o.version = {hlc, 1};
      o.sealed = crypto::Seal(keyring, crypto::ObjectKind::kChunk, o.id, 1, {hlc, 1},
                              crypto::primitives::RandomString(size));
    }
    ++hlc;
    const std::size_t bytes = objs[0].sealed.size();
    auto [bl_put, bl_put_s] = Measure(count, 1, [&](std::size_t i) {
      auto txn = lmdb::Txn::BeginWrite(env);
      dbi.Put(txn, std::string(crypto::IdBytes(objs[i].id)), objs[i].sealed);
      txn.Commit();
    });
    auto [bl_get, bl_get_s] = Measure(count, 1, [&](std::size_t i) {
      auto txn = lmdb::Txn::BeginRead(env);
      auto v = dbi.Get(txn, std::string(crypto::IdBytes(objs[i].id)));
      if (!v || v->size() != bytes) std::abort();
      std::string copy(*v);  // the replicator hands out an owned copy too
    });
    std::size_t failures = 0;
    auto [r_put, r_put_s] = Measure(count, 1, [&](std::size_t i) {
      if (!replicator.Put({objs[i]}).ok()) ++failures;
    });
    auto [r_get, r_get_s] = Measure(count, 1, [&](std::size_t i) {
      if (replicator.Get(objs[i].id).status != GetStatus::kFound) ++failures;
    });
    // Concurrent clients (FUSE workers): fresh versions so the puts are real writes.
    for (auto& o : objs) o.version = {hlc, 1};
    ++hlc;
    auto [c_put, c_put_s] = Measure(count, threads, [&](std::size_t i) {
      if (!replicator.Put({objs[i]}).ok()) ++failures;
    });
    auto [c_get, c_get_s] = Measure(count, threads, [&](std::size_t i) {
      if (replicator.Get(objs[i].id).status != GetStatus::kFound) ++failures;
    });
    Stats bp = Summarise(bl_put, bl_put_s, bytes), bg = Summarise(bl_get, bl_get_s, bytes);
    std::printf("-- %zu KiB objects, %zu each --\n", size / 1024, count);
    Row("LMDB put (durable commit each)", bp, nullptr);
    Row("LMDB get", bg, nullptr);
    Row("replicated PUT, 1 client", Summarise(r_put, r_put_s, bytes), &bp);
    Row("replicated GET, 1 client", Summarise(r_get, r_get_s, bytes), &bg);
    std::string tp = "replicated PUT, " + std::to_string(threads) + " clients";
    std::string tg = "replicated GET, " + std::to_string(threads) + " clients";
    Row(tp.c_str(), Summarise(c_put, c_put_s, bytes), &bp);
    Row(tg.c_str(), Summarise(c_get, c_get_s, bytes), &bg);
    if (failures) std::printf("!! %zu operations failed\n", failures);
  }
  return 0;
}
