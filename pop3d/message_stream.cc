// See message_stream.h.
#include "pop3d/message_stream.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace coffer::pop3d {
namespace {

struct StringSink {
  std::string& out;
  void Put(char c) { out.push_back(c); }
  void Put(std::string_view s) { out.append(s); }
};

struct CountSink {
  std::uint64_t n = 0;
  void Put(char) { ++n; }
  void Put(std::string_view s) { n += s.size(); }
};

}  // namespace

template <typename Sink>
void WireConverter::EndLine(Sink& sink) {
  sink.Put("\r\n");
  if (in_headers_) {
    if (line_length_ == 0) {
      in_headers_ = false;
      if (body_lines_ && *body_lines_ == 0) done_ = true;
    }
  } else if (body_lines_) {
    ++lines_sent_;
    if (lines_sent_ >= *body_lines_) done_ = true;
  }
  at_line_start_ = true;
  line_length_ = 0;
}

template <typename Sink>
bool WireConverter::Run(std::string_view in, Sink& sink) {
  std::size_t i = 0;
  while (i < in.size() && !done_) {
    char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') {
        EndLine(sink);
        ++i;
        continue;
      }
      // A bare CR inside a line is kept as it is.
      sink.Put('\r');
      ++line_length_;
    }
    if (c == '\r') {
      pending_cr_ = true;
      at_line_start_ = false;
      ++i;
      continue;
    }
    if (c == '\n') {
      EndLine(sink);
      ++i;
      continue;
    }
    if (at_line_start_ && c == '.' && stuff_) sink.Put('.');
    at_line_start_ = false;
    // Copy the run of ordinary bytes up to the next CR or LF in one go (memchr is vectorised).
    const char* begin = in.data() + i;
    std::size_t left = in.size() - i;
    const char* nl = static_cast<const char*>(std::memchr(begin, '\n', left));
    std::size_t run = nl ? static_cast<std::size_t>(nl - begin) : left;
    const char* cr = static_cast<const char*>(std::memchr(begin, '\r', run));
    if (cr) run = static_cast<std::size_t>(cr - begin);
    std::size_t j = i + run;
    sink.Put(in.substr(i, j - i));
    line_length_ += j - i;
    i = j;
  }
  return !done_;
}

bool WireConverter::Feed(std::string_view in, std::string& out) {
  StringSink sink{out};
  return Run(in, sink);
}

std::uint64_t WireConverter::Count(std::string_view in) {
  CountSink sink;
  Run(in, sink);
  return sink.n;
}

void WireConverter::Finish(std::string& out) {
  if (done_) return;
  if (pending_cr_ || !at_line_start_) {
    pending_cr_ = false;
    StringSink sink{out};
    EndLine(sink);
  }
  done_ = true;
}

std::uint64_t WireConverter::CountFinish() {
  if (done_) return 0;
  std::uint64_t n = 0;
  if (pending_cr_ || !at_line_start_) n = 2;
  pending_cr_ = false;
  done_ = true;
  return n;
}

bool MessageStream::Next(std::string& out) {
  out.clear();
  if (finished_) return false;
  if (!buffer_) buffer_ = std::make_unique_for_overwrite<char[]>(chunk_size_);
  while (out.empty()) {
    ssize_t n = converter_.done() ? 0 : ::read(fd_.Get(), buffer_.get(), chunk_size_);
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("reading message");
    }
    if (n == 0) {
      converter_.Finish(out);
      out.append(".\r\n");
      finished_ = true;
      return true;
    }
    converter_.Feed(std::string_view(buffer_.get(), static_cast<std::size_t>(n)), out);
  }
  return true;
}

std::uint64_t VirtualSize(std::string_view stored) {
  WireConverter converter(false, std::nullopt);
  return converter.Count(stored) + converter.CountFinish();
}

std::uint64_t VirtualSizeOfFd(int fd) {
  WireConverter converter(false, std::nullopt);
  std::string buffer(64 * 1024, '\0');
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("reading message");
    }
    if (n == 0) break;
    total += converter.Count(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  return total + converter.CountFinish();
}

}  // namespace coffer::pop3d
