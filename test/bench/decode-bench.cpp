// uvcometd-decode-bench — the frame decoder alone (detail::decode_frame) against
// rapidjson::Document::Parse on the same frame text as firehose-server.js sends. No I/O, no
// server: the figure that uvcometd-bench's end-to-end numbers contain, without their noise.
//
//   uvcometd-decode-bench [--count N] [--size B] [--batch M] [--payload ascii|utf8|escaped]
//
// Output: "key: value" lines, then one "summary:" line. Under callgrind, divide the instructions
// by the message count printed (each side runs at least --count messages and 0.3 s of CPU).
#include <rapidjson/document.h>

#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "bench_util.hpp"
#include "codec.hpp"

namespace {

struct args {
  unsigned long count = 2000000;
  unsigned long size = 100;
  unsigned long batch = 1000;
  std::string payload = "ascii";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "uvcometd-decode-bench: %s\n"
               "usage: uvcometd-decode-bench [--count N] [--size B] [--batch M] "
               "[--payload ascii|utf8|escaped]\n",
               why);
  std::exit(2);
}

unsigned long parse_number(const std::string& name, const char* text, unsigned long min) {
  return uvcometd_bench::parse_number(name, text, min, usage);
}

args parse_args(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") usage("benchmark of the frame decoder");
    if (i + 1 >= argc) usage((k + " needs a value").c_str());
    const char* v = argv[++i];
    if (k == "--count") {
      a.count = parse_number(k, v, 1);
    } else if (k == "--size") {
      a.size = parse_number(k, v, 0);
    } else if (k == "--batch") {
      a.batch = parse_number(k, v, 1);
    } else if (k == "--payload") {
      a.payload = v;
      if (a.payload != "ascii" && a.payload != "utf8" && a.payload != "escaped") {
        usage("--payload is ascii, utf8 or escaped");
      }
    } else {
      usage(("unknown argument " + k).c_str());
    }
  }
  return a;
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// A payload string's content of about `size` bytes: plain ASCII (the firehose's), two-byte UTF-8
// characters, or ASCII with an escape every 10 bytes (decoded into the frame's arena when the
// string is a field the decoder reads; `data` stays raw either way).
std::string payload(const std::string& kind, unsigned long size) {
  if (kind == "utf8") {
    std::string s;
    while (s.size() + 2 <= size) s += "\xc3\xa9";
    return s;
  }
  if (kind == "escaped") {
    std::string s;
    while (s.size() < size) s += (s.size() % 10 == 8) ? "\\n" : "x";
    return s;
  }
  return std::string(size, 'x');
}

using uvcometd_bench::frame_text;

}  // namespace

int main(int argc, char** argv) {
  const args a = parse_args(argc, argv);
  const unsigned long per_frame = a.batch;
  const std::string frame = frame_text(per_frame, payload(a.payload, a.size));

  // The decoder, reusing one decoded_frame as the session does.
  uvcometd::detail::decoded_frame out;
  unsigned long decoded = 0;
  std::size_t sink = 0;
  double t0 = cpu_seconds();
  double t1 = t0;
  while (decoded < a.count || t1 - t0 < 0.3) {
    if (auto e = uvcometd::detail::decode_frame(frame, out)) {
      std::fprintf(stderr, "uvcometd-decode-bench: decode_frame: %s\n", e.message.c_str());
      return 1;
    }
    sink += out.messages.size();
    decoded += per_frame;
    t1 = cpu_seconds();
  }
  const double decode_ns = (t1 - t0) * 1e9 / double(decoded);
  const std::string_view last_data = out.messages.back().data;
  if (sink != decoded || last_data.size() < a.size || last_data.substr(0, 6) != "{\"p\":\"") {
    std::fprintf(stderr, "uvcometd-decode-bench: wrong message count or data\n");
    return 1;
  }

  // RapidJSON's DOM parse, a new Document per frame (the uvcometd-bench parse ceiling).
  unsigned long parsed = 0;
  t0 = cpu_seconds();
  t1 = t0;
  while (parsed < a.count || t1 - t0 < 0.3) {
    rapidjson::Document d;
    d.Parse(frame.data(), frame.size());
    if (d.HasParseError() || !d.IsArray() || d.Size() != per_frame) {
      std::fprintf(stderr, "uvcometd-decode-bench: rapidjson could not parse the frame\n");
      return 1;
    }
    parsed += per_frame;
    t1 = cpu_seconds();
  }
  const double parse_ns = (t1 - t0) * 1e9 / double(parsed);

  std::printf("payload: %s\nsize: %lu\nbatch: %lu\nframe_bytes: %zu\n", a.payload.c_str(), a.size,
              a.batch, frame.size());
  std::printf("decoded_msgs: %lu\nparsed_msgs: %lu\n", decoded, parsed);
  std::printf("decode_ns_per_msg: %.1f\n", decode_ns);
  std::printf("decode_mb_per_s: %.0f\n",
              double(frame.size()) / double(per_frame) / decode_ns * 1e3);
  std::printf("rapidjson_ns_per_msg: %.1f\n", parse_ns);
  std::printf("decode_over_rapidjson: %.2f\n", decode_ns / parse_ns);
  std::printf("summary: decode %.1f ns/msg, rapidjson DOM %.1f ns/msg (decode takes %.2fx)\n",
              decode_ns, parse_ns, decode_ns / parse_ns);
  return 0;
}
