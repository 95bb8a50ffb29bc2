#include "transport/cookie_jar.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

#include "transport/http_text.hpp"

namespace uvcometd::detail {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 6265 5.1.4: the directory of the request path.
std::string default_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return "/";
  const auto last = path.rfind('/');
  if (last == 0) return "/";
  return std::string(path.substr(0, last));
}

// RFC 6265 5.1.4: does the cookie path `cp` match the request path `rp`?
bool path_matches(std::string_view cp, std::string_view rp) {
  if (rp.compare(0, cp.size(), cp) != 0) return false;
  return rp.size() == cp.size() || cp.back() == '/' || rp[cp.size()] == '/';
}

// RFC 6265 5.1.3: does `domain` (a Domain attribute, without its leading dot) match `host`?
bool domain_matches(const std::string& domain, const std::string& host) {
  if (domain == host) return true;
  return host.size() > domain.size() &&
         host.compare(host.size() - domain.size(), domain.size(), domain) == 0 &&
         host[host.size() - domain.size() - 1] == '.';
}

}  // namespace

bool url_origin(std::string_view url, std::string& origin, std::string& path) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  std::string scheme = lower(url.substr(0, sep));
  if (scheme == "ws") scheme = "http";
  if (scheme == "wss") scheme = "https";
  std::string_view rest = url.substr(sep + 3);
  const auto auth_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, auth_end);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(0, close + 1);
    if (authority.size() > close + 1 && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return false;
  std::string p(port);
  if (p.empty()) p = scheme == "https" ? "443" : scheme == "http" ? "80" : "";
  origin = scheme + "://" + lower(host) + ":" + p;
  std::string_view rp =
      auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
  rp = rp.substr(0, rp.find_first_of("?#"));
  path = rp.empty() || rp.front() != '/' ? "/" : std::string(rp);
  return true;
}

void cookie_jar::store(std::string_view url, std::string_view set_cookie, std::time_t now) {
  std::string origin, req_path;
  if (!url_origin(url, origin, req_path)) return;
  if (set_cookie.size() > max_cookie_bytes || has_ctl(set_cookie)) return;
  // name=value, then attributes separated by ';'.
  const auto semi = set_cookie.find(';');
  const std::string_view pair = set_cookie.substr(0, semi);
  const auto eq = pair.find('=');
  if (eq == std::string_view::npos) return;
  cookie c;
  c.origin = origin;
  c.name = std::string(trim_ows(pair.substr(0, eq)));
  c.value = std::string(trim_ows(pair.substr(eq + 1)));
  if (c.name.empty()) return;
  c.path = default_path(req_path);
  bool has_max_age = false;
  bool expired = false;
  bool secure = false;
  std::string_view attrs =
      semi == std::string_view::npos ? std::string_view{} : set_cookie.substr(semi + 1);
  while (!attrs.empty()) {
    const auto next = attrs.find(';');
    const std::string_view av = attrs.substr(0, next);
    attrs = next == std::string_view::npos ? std::string_view{} : attrs.substr(next + 1);
    const auto aeq = av.find('=');
    const std::string_view key = trim_ows(av.substr(0, aeq));
    const std::string_view val =
        aeq == std::string_view::npos ? std::string_view{} : trim_ows(av.substr(aeq + 1));
    if (iequals(key, "max-age")) {
      long long secs = 0;
      const bool neg = !val.empty() && val.front() == '-';
      const std::string_view digits = neg ? val.substr(1) : val;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), secs);
      if (digits.empty() || end != digits.data() + digits.size()) continue;  // ignored (RFC 6265)
      has_max_age = true;
      if (ec == std::errc::result_out_of_range) secs = std::numeric_limits<int>::max();
      if (neg || secs <= 0) {
        expired = true;
      } else {
        expired = false;
        c.expires = now + static_cast<std::time_t>(std::min<long long>(secs, 400LL * 24 * 3600));
      }
    } else if (iequals(key, "expires") && !has_max_age) {
      const std::string date(val);
      const std::time_t t = curl_getdate(date.c_str(), nullptr);
      if (t == -1) continue;
      expired = t <= now;
      if (!expired) c.expires = t;
    } else if (iequals(key, "path")) {
      if (!val.empty() && val.front() == '/') c.path = std::string(val);
    } else if (iequals(key, "domain")) {
      // Scoped by origin whatever it says; a Domain the host is not in refuses the cookie.
      std::string_view d = val;
      while (!d.empty() && d.front() == '.') d.remove_prefix(1);
      std::string host = origin.substr(origin.find("://") + 3);
      host = host.substr(0, host.rfind(':'));
      if (!d.empty() && !domain_matches(lower(d), host)) return;
    } else if (iequals(key, "secure")) {
      secure = true;
    }
  }
  if (secure && origin.compare(0, 8, "https://") != 0) return;
  const auto same = [&](const cookie& o) {
    return o.origin == c.origin && o.name == c.name && o.path == c.path;
  };
  const auto it = std::find_if(cookies_.begin(), cookies_.end(), same);
  if (expired) {
    if (it != cookies_.end()) {
      cookies_.erase(it);
      ++version_;
    }
    return;
  }
  if (it != cookies_.end()) {
    c.created = it->created;  // RFC 6265 5.3 step 11: keeps its creation time
    *it = std::move(c);
  } else {
    const auto n = static_cast<std::size_t>(std::count_if(
        cookies_.begin(), cookies_.end(), [&](const cookie& o) { return o.origin == origin; }));
    if (n >= max_per_origin) {
      // The oldest of this origin makes room.
      auto oldest = cookies_.end();
      for (auto i = cookies_.begin(); i != cookies_.end(); ++i) {
        if (i->origin == origin && (oldest == cookies_.end() || i->created < oldest->created))
          oldest = i;
      }
      cookies_.erase(oldest);
    }
    c.created = ++created_;
    cookies_.push_back(std::move(c));
  }
  ++version_;
  next_expiry_ = 0;
  for (const auto& k : cookies_) {
    if (k.expires != 0 && (next_expiry_ == 0 || k.expires < next_expiry_)) next_expiry_ = k.expires;
  }
}

void cookie_jar::purge(std::time_t now) {
  const auto before = cookies_.size();
  cookies_.erase(
      std::remove_if(cookies_.begin(), cookies_.end(),
                     [&](const cookie& c) { return c.expires != 0 && c.expires <= now; }),
      cookies_.end());
  if (cookies_.size() != before) ++version_;
  next_expiry_ = 0;
  for (const auto& k : cookies_) {
    if (k.expires != 0 && (next_expiry_ == 0 || k.expires < next_expiry_)) next_expiry_ = k.expires;
  }
}

std::uint64_t cookie_jar::version(std::time_t now) {
  if (next_expiry_ != 0 && now >= next_expiry_) purge(now);
  return version_;
}

std::string cookie_jar::header_for(std::string_view url, std::time_t now) const {
  std::string origin, path;
  if (cookies_.empty() || !url_origin(url, origin, path)) return {};
  std::vector<const cookie*> match;
  for (const auto& c : cookies_) {
    if (c.origin != origin || (c.expires != 0 && c.expires <= now) || !path_matches(c.path, path))
      continue;
    match.push_back(&c);
  }
  // RFC 6265 5.4: longer paths first, then the earlier created.
  std::sort(match.begin(), match.end(), [](const cookie* a, const cookie* b) {
    return a->path.size() != b->path.size() ? a->path.size() > b->path.size()
                                            : a->created < b->created;
  });
  std::string out;
  for (const cookie* c : match) {
    if (!out.empty()) out += "; ";
    out.append(c->name).append("=").append(c->value);
  }
  return out;
}

}  // namespace uvcometd::detail
