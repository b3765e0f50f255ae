// Turns a stored message (bytes as the MTA wrote them, usually with bare LF line ends) into the
// POP3 wire form: CRLF line ends, a '.' doubled at the start of a line (RFC 1939 byte-stuffing),
// a final CRLF if the message lacked one, and the terminating ".\r\n". TOP's "headers plus N
// body lines" cut is done here too.
//
// The converter is incremental so that large messages are streamed in bounded chunks (the
// server awaits each socket write before reading the next chunk: back-pressure). The same state
// machine counts the "virtual size" reported by LIST/STAT, so the two can never disagree.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/fd.h"

namespace coffer::pop3d {

// Incremental LF->CRLF conversion with optional dot-stuffing and TOP line limit.
// Not thread-safe; one per message transfer.
class WireConverter {
 public:
  // `stuff`: double leading dots (wire form) or not (size counting).
  // `body_lines`: for TOP, the number of body lines after the header/body separator; nullopt
  // for the whole message.
  WireConverter(bool stuff, std::optional<std::uint64_t> body_lines) noexcept
      : stuff_(stuff), body_lines_(body_lines) {}

  // Converts `in` and appends to `out`. Returns false once the TOP limit was reached (the rest
  // of the input is ignored; further calls append nothing).
  bool Feed(std::string_view in, std::string& out);
  // Ends the message: completes a partial last line with CRLF. Does not add ".\r\n".
  void Finish(std::string& out);
  // Number of bytes Feed/Finish would append, without building them (for sizes).
  std::uint64_t Count(std::string_view in);
  std::uint64_t CountFinish();
  bool done() const noexcept { return done_; }

 private:
  template <typename Sink>
  bool Run(std::string_view in, Sink& sink);
  template <typename Sink>
  void EndLine(Sink& sink);

  bool stuff_;
  std::optional<std::uint64_t> body_lines_;
  bool done_ = false;
  bool at_line_start_ = true;
  bool pending_cr_ = false;
  bool in_headers_ = true;
  std::size_t line_length_ = 0;
  std::uint64_t lines_sent_ = 0;
};

// Streams one message in wire form from an open file. Owns the descriptor.
class MessageStream {
 public:
  // `size_hint` (the stored size, if known) keeps the read buffer small for small messages.
  MessageStream(UniqueFd fd, std::optional<std::uint64_t> body_lines, std::size_t chunk_size,
                std::uint64_t size_hint = UINT64_MAX)
      : fd_(std::move(fd)),
        converter_(true, body_lines),
        chunk_size_(static_cast<std::size_t>(
            std::max<std::uint64_t>(1, std::min<std::uint64_t>(chunk_size, size_hint + 1)))) {}

  // Replaces `out` with the next piece of wire data (at most about 2 * chunk_size bytes).
  // Returns false when nothing is left (the terminating ".\r\n" was in an earlier piece).
  // Throws coffer::Error on a read error: the caller must then drop the connection, since the
  // multi-line reply can no longer be completed correctly.
  bool Next(std::string& out);

 private:
  UniqueFd fd_;
  WireConverter converter_;
  std::size_t chunk_size_;
  std::unique_ptr<char[]> buffer_;  // chunk_size_ bytes, allocated on first use
  bool finished_ = false;
};

// The virtual (CRLF) size of a message given its stored bytes, as LIST reports it.
std::uint64_t VirtualSize(std::string_view stored);
// The same from a file descriptor (reads it to the end). Throws coffer::Error on read errors.
std::uint64_t VirtualSizeOfFd(int fd);

}  // namespace coffer::pop3d
