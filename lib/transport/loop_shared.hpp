// The one registry for what the transports of one uv loop share (the curl multi, the lws
// contexts): acquire() hands out an object of (loop, key) that has room, made when none has;
// release() gives it back, and the last user's release takes it out of the registry and starts its
// teardown. Objects are never shared across loops (two loops may run on two threads: the registry
// is locked; each object is used only on its loop's thread).
#pragma once

#include <uv.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace uvcometd::detail {

// T provides:
//   static std::shared_ptr<T> create(uv_loop_t* loop, const Key& key);  null when it cannot be made
//   static constexpr std::size_t capacity;                             users per object
//   void tear_down(std::function<void()> closed);  the last user left: close every handle, then
//                                                  run `closed` (never from inside this call)
template <class T, class Key>
class loop_shared {
 public:
  // An object of `loop` and `key` with room for one more user (counted), made if none has room.
  // Null when T::create failed; throws what it throws (std::bad_alloc).
  static std::shared_ptr<T> acquire(uv_loop_t* loop, const Key& key) {
    registry& r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (entry& e : r.live) {
      if (e.loop == loop && e.users < T::capacity && e.key == key) {
        ++e.users;
        return e.obj;
      }
    }
    r.live.reserve(r.live.size() + 1);
    std::shared_ptr<T> obj = T::create(loop, key);
    if (obj) r.live.push_back(entry{loop, key, obj, 1});  // cannot throw: reserved
    return obj;
  }

  // One user of `obj` leaves. True when it was the last: `obj` is no longer handed out, its
  // teardown starts, and `closed` runs once its handles are closed (so that uv_loop_close()
  // succeeds after the last user's own close completed).
  static bool release(const std::shared_ptr<T>& obj, std::function<void()> closed) {
    {
      registry& r = reg();
      std::lock_guard<std::mutex> lock(r.mutex);
      const auto it =
          std::find_if(r.live.begin(), r.live.end(), [&](const entry& e) { return e.obj == obj; });
      if (it == r.live.end() || --it->users > 0) return false;
      r.live.erase(it);
    }
    obj->tear_down(std::move(closed));
    return true;
  }

  // Calls f(T&) for every object of `loop` still handed out.
  template <class F>
  static void for_each(uv_loop_t* loop, F&& f) {
    registry& r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (entry& e : r.live) {
      if (e.loop == loop) f(*e.obj);
    }
  }

 private:
  struct entry {
    uv_loop_t* loop;
    Key key;
    std::shared_ptr<T> obj;
    std::size_t users;
  };
  struct registry {
    std::mutex mutex;
    std::vector<entry> live;
  };
  static registry& reg() {
    // Never destroyed: an object a leaked client still holds is not torn down at exit.
    static registry* r = new registry;
    return *r;
  }
};

}  // namespace uvcometd::detail
