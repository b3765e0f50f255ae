// The fixture of the cofferfs core on real storage nodes, without a mount: three coffer-node
// processes on 127.0.0.1 (R=3, W=2), Filesystem instances on them with their state in a
// temporary directory, and helpers to deliver, read and list through the core.
#pragma once

#include <fcntl.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/keyfile.h"
#include "fs/filesystem.h"
#include "fs/object_verifier.h"
#include "replicator/replicator.h"
#include "replicator/curve.h"
#include "replicator/transport.h"
#include "tests/replicator/test_util.h"

namespace coffer::fs {

using namespace std::chrono_literals;
using testutil::NodeProcess;

class ReplicatedFsTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 3;

  ReplicatedFsTest() : keys_(keyfile::KeySet::Generate(1700000000)) {}

  void SetUp() override {
    box_keys_ = replicator::GenerateKeyPair();
    admin_keys_ = replicator::GenerateKeyPair();
    replicator::WriteKeyPair(dir_.path() + "/admin", admin_keys_);
    std::ofstream(dir_.path() + "/allowed") << box_keys_.public_key << "\n";
    for (int i = 0; i < kNodes; ++i) {
      replicator::CurveKeyPair k;
      auto setup = NodeProcess::MakeSetup(dir_.path(), "n" + std::to_string(i + 1), &k);
      setup.extra_args = NodeArgs(i);
      node_keys_.push_back(k);
      nodes_.push_back(std::make_unique<NodeProcess>(setup));
      nodes_.back()->Start();
    }
  }
  // Extra command-line arguments of node i (0-based).
  virtual std::vector<std::string> NodeArgs(int /*i*/) { return {}; }

  void TearDown() override {
    fs_.reset();
    for (auto& n : nodes_) {
      if (HasFailure() && n->running()) {
        std::string log = n->Log();
        if (log.size() > 2000) log = log.substr(log.size() - 2000);
        std::cerr << "---- " << n->setup().node_id << " log tail:\n" << log;
      }
      n->Kill();
    }
  }

  replicator::ReplicatorOptions ReplicatorOptions() {
    replicator::ReplicatorOptions o;
    for (int i = 0; i < kNodes; ++i) {
      o.nodes.push_back({nodes_[static_cast<std::size_t>(i)]->setup().node_id,
                         nodes_[static_cast<std::size_t>(i)]->endpoint(),
                         node_keys_[static_cast<std::size_t>(i)].public_key});
    }
    o.client_keys = box_keys_;
    o.replicas = 3;
    o.write_timeout = 1500ms;
    o.read_timeout = 1000ms;
    o.admin_timeout = 2000ms;
    o.collect_tombstones = true;
    o.tombstone_grace = 0s;
    o.verifier = MakeVerifier(std::make_shared<const crypto::Keyring>(keys_.MakeKeyring()));
    return o;
  }

  // What the tests look at below the facade of a mounted box.
  struct StoreView {
    Filesystem* fs = nullptr;
    replicator::Replicator* rep = nullptr;
    std::size_t OutboxSize() { return fs->pipeline().status().outbox; }
    std::size_t EvictNow() { return fs->chunks().EvictNow(); }
    std::uint64_t CacheBytes() { return fs->chunks().status().bytes; }
    void Scan(Table t, const std::function<void(std::string_view, std::string_view)>& f) {
      fs->local().Scan(t, f);
    }
    replicator::ScrubReport ScrubNow() { return fs->Scrub(); }
    replicator::Replicator& replicator() { return *rep; }
    std::vector<std::pair<std::string, replicator::NodeTrust>> Trust() {
      std::vector<std::pair<std::string, replicator::NodeTrust>> out;
      const auto stats = rep->stats();
      const auto ids = rep->node_ids();
      for (std::size_t i = 0; i < ids.size(); ++i) out.emplace_back(ids[i], stats.nodes[i]);
      return out;
    }
  };

  // Opens cofferfs on the nodes with its state in dir_/NAME; store_ looks below it.
  void Mount(const std::string& name, bool queue = false, std::uint64_t cache_limit = 0) {
    fs_.reset();
    auto rep = std::make_unique<replicator::Replicator>(ReplicatorOptions());
    rep->WaitConnected(3000ms);
    Options o;
    o.degraded_queue = queue;
    o.commit_interval_ms = 50;
    o.statfs_path = dir_.path();
    o.cache_limit_bytes = cache_limit;
    o.maintenance_interval = 100ms;
    o.scrub_interval = 0s;
    replicator::Replicator* raw = rep.get();
    fs_ = std::make_unique<Filesystem>(LmdbStore::Open(dir_ / name), std::move(rep),
                                       keys_.MakeKeyring(), keys_.store_fingerprint(), o);
    store_ = &store_view_;
    store_view_ = StoreView{fs_.get(), raw};
    fs_->Start();
  }

  std::uint64_t Ino(std::uint64_t parent, const std::string& name) {
    struct stat st {};
    if (fs_->Lookup(parent, name, &st) != 0) return 0;
    return st.st_ino;
  }
  // Creates, writes and closes a file; returns the close (flush) result.
  int Deliver(std::uint64_t dir, const std::string& name, const std::string& content,
              std::uint64_t* ino_out = nullptr) {
    struct stat st {};
    std::uint64_t fh = 0;
    int rc = fs_->Create(dir, name, 0600, O_WRONLY, ctx_, &st, &fh);
    if (rc != 0) return rc;
    std::size_t n = 0;
    EXPECT_EQ(fs_->Write(st.st_ino, fh, 0, content, &n), 0);
    rc = fs_->Fsync(st.st_ino, false);
    int flush = fs_->Flush(st.st_ino, fh);
    fs_->Release(st.st_ino, fh);
    if (ino_out) *ino_out = st.st_ino;
    return rc != 0 ? rc : flush;
  }
  std::string Read(std::uint64_t ino) {
    struct stat st {};
    EXPECT_EQ(fs_->GetAttr(ino, &st), 0);
    std::uint64_t fh = 0;
    EXPECT_EQ(fs_->Open(ino, O_RDONLY, &fh), 0);
    std::string out;
    EXPECT_EQ(fs_->Read(ino, fh, 0, static_cast<std::size_t>(st.st_size) + 10, &out), 0);
    fs_->Release(ino, fh);
    return out;
  }
  std::map<std::string, std::string> Listing(std::uint64_t dir) {
    std::map<std::string, std::string> out;
    std::vector<std::pair<std::string, std::uint64_t>> entries;
    fs_->ReadDir(dir, 0, [&](const DirEntryOut& e) {
      if (e.name != "." && e.name != "..") entries.emplace_back(e.name, e.ino);
      return true;
    });
    for (const auto& [name, ino] : entries) out[name] = Read(ino);
    return out;
  }
  std::uint64_t MakeMaildir(const std::string& name) {
    struct stat st {};
    EXPECT_EQ(fs_->MkDir(kRootIno, name, 0700, ctx_, &st), 0);
    std::uint64_t md = st.st_ino;
    for (const char* sub : {"tmp", "new", "cur"}) EXPECT_EQ(fs_->MkDir(md, sub, 0700, ctx_, &st), 0);
    return md;
  }
  void WaitOutboxEmpty(std::chrono::seconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (store_->OutboxSize() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(50ms);
    ASSERT_EQ(store_->OutboxSize(), 0u) << fs_->StatusLine();
  }
  // Waits until the chunks that deletes made unreferenced are tombstoned on the nodes (once the
  // box caught up past the deletes), and those tombstones are on W nodes.
  void WaitChunksReleased(std::chrono::seconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (fs_->BoxFields().find(" chunks_awaiting_boxes=0") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(50ms);
    ASSERT_NE(fs_->BoxFields().find(" chunks_awaiting_boxes=0"), std::string::npos)
        << fs_->BoxFields();
    ASSERT_EQ(fs_->FsyncDir(kRootIno), 0);
    WaitOutboxEmpty(limit);
  }
  static std::string Body(int i, std::size_t size) {
    std::string s = "Message-ID: <" + std::to_string(i) + "@test>\n\n";
    while (s.size() < size) s += "line " + std::to_string(s.size() * 7 + i) + " of the body\n";
    s.resize(size);
    return s;
  }

  // One request to node `node` straight over its socket (with the admin key if `admin`),
  // retried while the connection comes up.
  replicator::CallResult CallNode(std::size_t node, const replicator::wire::Request& req,
                                  bool admin = false) {
    replicator::Transport t({{nodes_[node]->setup().node_id, nodes_[node]->endpoint(),
                              node_keys_[node].public_key}},
                            admin ? admin_keys_ : box_keys_);
    replicator::CallResult r;
    for (int i = 0; i < 100; ++i) {
      r = t.Call(0, req, 2000ms).get();
      if (r.status != replicator::CallStatus::kUnreachable) break;
      std::this_thread::sleep_for(30ms);
    }
    return r;
  }

  testutil::TempDir dir_;
  keyfile::KeySet keys_;
  replicator::CurveKeyPair box_keys_, admin_keys_;
  std::vector<replicator::CurveKeyPair> node_keys_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::unique_ptr<Filesystem> fs_;
  StoreView store_view_;
  StoreView* store_ = nullptr;
  Context ctx_{1000, 1000, {}};
};

}  // namespace coffer::fs
