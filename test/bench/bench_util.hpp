// What both benchmarks share: their number arguments and the firehose's frame shape.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <string>

namespace uvcometd_bench {

// Parses `text` as an unsigned integer >= min, or calls usage (which does not return).
inline unsigned long parse_number(const std::string& name, const char* text, unsigned long min,
                                  void (*usage)(const char*)) {
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min) {
    usage((name + " needs an integer >= " + std::to_string(min)).c_str());
    std::abort();  // usage() exits
  }
  return v;
}

// One firehose message on /bench whose data is {"p":"<payload>"} (payload as JSON string content).
inline std::string message_text(const std::string& payload) {
  return "{\"channel\":\"/bench\",\"data\":{\"p\":\"" + payload + "\"}}";
}

// A frame of `n` copies of message_text(payload), as firehose-server.js builds them.
inline std::string frame_text(unsigned long n, const std::string& payload) {
  const std::string m = message_text(payload);
  std::string f = "[";
  f.reserve(2 + n * (m.size() + 1));
  for (unsigned long i = 0; i < n; ++i) {
    if (i) f += ',';
    f += m;
  }
  f += ']';
  return f;
}

}  // namespace uvcometd_bench
