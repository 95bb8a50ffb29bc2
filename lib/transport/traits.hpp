// What a transport is, as far as the session cares: its capabilities, asked instead of its
// connection type. No uv, curl or lws header, so the session includes it.
#pragma once

namespace uvcometd::detail {

struct transport_traits {
  bool request_response = false;  // each frame is an exchange with its own response and timeout
  bool pausable = false;          // reading can stop (backpressure) without losing anything
  bool merges_frames = false;     // frames queued together may leave as one (unless `alone`)
};

}  // namespace uvcometd::detail
