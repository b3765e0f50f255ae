// libFuzzer target: a storage node's request decoding and handling (RequestHandler over a real
// ObjectStore). Whatever arrives, the handler must answer with a well-formed Reply (or nothing,
// when a previous input switched it to play-dead silent), never crash, never throw.
// The first byte chooses the client identity (admin or box) and whether the input is split into
// a batch of several requests (group commit path).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "replicator/handler.h"
#include "replicator/store.h"

namespace {

coffer::replicator::RequestHandler& Handler() {
  static coffer::replicator::ObjectStore* store = [] {
    // tmpfs when available: durable commits are cheap there.
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/coffer-node-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    return new coffer::replicator::ObjectStore(tmpl, std::size_t{1} << 30);
  }();
  static coffer::replicator::HandlerLimits limits = [] {
    coffer::replicator::HandlerLimits l;
    l.max_message_size = 1 << 20;
    l.max_object_size = 1 << 16;
    l.max_batch = 64;
    l.max_list = 64;
    return l;
  }();
  static coffer::replicator::RequestHandler handler(*store, "fuzz", limits);
  return handler;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  auto& handler = Handler();
  const std::uint8_t mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  coffer::replicator::ClientIdentity who{"fuzz", (mode & 1) != 0};
  std::vector<coffer::replicator::RequestHandler::Incoming> batch;
  if (mode & 2) {
    // Split at 0xff bytes into several requests.
    std::size_t start = 0;
    for (std::size_t i = 0; i <= rest.size(); ++i) {
      if (i == rest.size() || static_cast<unsigned char>(rest[i]) == 0xff) {
        batch.push_back({rest.substr(start, i - start), who});
        start = i + 1;
      }
    }
  } else {
    batch.push_back({rest, who});
  }
  for (const auto& in : batch) (void)coffer::replicator::IsWriteRequest(in.bytes);
  auto outcomes = handler.HandleBatch(batch);
  if (outcomes.size() != batch.size()) std::abort();
  for (const auto& o : outcomes) {
    if (!o.reply) continue;
    coffer::replicator::wire::Reply reply;
    if (!reply.ParseFromString(*o.reply)) std::abort();
  }
  // Keep the node answering for the next input.
  if (handler.play_dead().mode != coffer::replicator::wire::PLAY_DEAD_OFF) {
    handler.set_play_dead({});
  }
  return 0;
}
