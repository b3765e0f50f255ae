// Unit tests of placement (rendezvous hashing) and version ordering.
#include "replicator/placement.h"

#include <gtest/gtest.h>

#include <set>

#include "common/crypto.h"
#include "replicator/replicator.h"
#include "replicator/version.h"

namespace coffer::replicator {
namespace {

std::vector<std::string> Nodes(int n) {
  std::vector<std::string> ids;
  for (int i = 1; i <= n; ++i) ids.push_back("node" + std::to_string(i));
  return ids;
}

TEST(PlacementTest, ReplicasAreDistinctStableAndIndependentOfOrder) {
  Placement p(Nodes(5));
  std::vector<std::string> reversed = Nodes(5);
  std::reverse(reversed.begin(), reversed.end());
  Placement q(reversed);
  for (int i = 0; i < 1000; ++i) {
    std::string id = std::string(crypto::IdBytes(crypto::RandomObjectId()));
    auto a = p.Replicas(id, 3);
    ASSERT_EQ(a.size(), 3u);
    EXPECT_EQ(std::set<std::size_t>(a.begin(), a.end()).size(), 3u);
    EXPECT_EQ(a, p.Replicas(id, 3));
    auto b = q.Replicas(id, 3);
    for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(p.node_ids()[a[k]], q.node_ids()[b[k]]);
  }
  EXPECT_EQ(p.Replicas("x", 9).size(), 5u);
}

TEST(PlacementTest, KnownValueIsFrozen) {
  // The hash is part of the data layout: this must never change.
  Placement p(Nodes(5));
  std::string id(16, '\0');
  for (int i = 0; i < 16; ++i) id[static_cast<std::size_t>(i)] = static_cast<char>(i);
  auto r = p.Replicas(id, 3);
  std::vector<std::string> names;
  for (auto i : r) names.push_back(p.node_ids()[i]);
  // Recorded from the first implementation.
  const std::vector<std::string> kExpected = {"node4", "node5", "node2"};
  EXPECT_EQ(names, kExpected);
  EXPECT_EQ(Placement::HashNodeId("node1"), 0x59a32cdbd8ec99f9ULL);
  EXPECT_EQ(Placement::Score(Placement::HashNodeId("node1"), id), 0x1bb74d1eb48b3a13ULL);
  EXPECT_NE(Placement::HashNodeId("node1"), Placement::HashNodeId("node2"));
}

TEST(PlacementTest, LoadIsBalanced) {
  Placement p(Nodes(5));
  std::vector<int> count(5, 0);
  const int kObjects = 20000;
  for (int i = 0; i < kObjects; ++i) {
    for (auto n : p.Replicas(std::string(crypto::IdBytes(crypto::RandomObjectId())), 3)) ++count[n];
  }
  for (int c : count) {
    EXPECT_NEAR(c, kObjects * 3 / 5, kObjects * 3 / 5 * 0.06);
  }
}

TEST(PlacementTest, AddingANodeMovesAboutOneInNPlusOne) {
  const int kObjects = 20000;
  for (int n : {4, 5, 9}) {
    Placement before(Nodes(n));
    Placement after(Nodes(n + 1));
    int moved_primary = 0, moved_slots = 0, moved_between_old = 0;
    for (int i = 0; i < kObjects; ++i) {
      std::string id = std::string(crypto::IdBytes(crypto::RandomObjectId()));
      auto a = before.Replicas(id, 1);
      auto b = after.Replicas(id, 1);
      if (before.node_ids()[a[0]] != after.node_ids()[b[0]]) {
        ++moved_primary;
        // Anything that moves, moves to the new node only.
        if (after.node_ids()[b[0]] != "node" + std::to_string(n + 1)) ++moved_between_old;
      }
      auto a3 = before.Replicas(id, 3);
      auto b3 = after.Replicas(id, 3);
      std::set<std::string> sa, sb;
      for (auto k : a3) sa.insert(before.node_ids()[k]);
      for (auto k : b3) sb.insert(after.node_ids()[k]);
      for (const auto& s : sb) moved_slots += sa.count(s) ? 0 : 1;
    }
    double expect = 1.0 / (n + 1);
    EXPECT_NEAR(static_cast<double>(moved_primary) / kObjects, expect, 0.02) << "n=" << n;
    EXPECT_EQ(moved_between_old, 0);
    // With R=3 each object gains the new node in 3/(n+1) of the cases, moving one replica.
    EXPECT_NEAR(static_cast<double>(moved_slots) / kObjects, 3.0 / (n + 1), 0.03) << "n=" << n;
  }
}

TEST(VersionTest, OrderIsHlcThenBoxId) {
  EXPECT_LT((Version{1, 9}), (Version{2, 0}));
  EXPECT_LT((Version{5, 1}), (Version{5, 2}));
  EXPECT_EQ((Version{5, 2}), (Version{5, 2}));
  EXPECT_GT((Version{6, 0}), (Version{5, 100}));
  EXPECT_TRUE(IsZero(Version{}));
  EXPECT_EQ(ToString(Version{7, 3}), "7.3");
  wire::Version w;
  ToWire(Version{7, 3}, &w);
  EXPECT_EQ(FromWire(w), (Version{7, 3}));
}

}  // namespace
}  // namespace coffer::replicator
