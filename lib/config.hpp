// The client's options, checked once and turned into what the session and the transports use.
#pragma once

#include <string>
#include <vector>

#include "session/session.hpp"
#include "transport/transport.hpp"
#include "uvcometd/extension.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

// The part of the options the session uses.
session_config make_session_config(const options& o);

// `o`, or std::system_error(errc::invalid_argument) with options_problem()'s words.
const options& validated(const options& o);

// The transports' settings for the server `url`, from the options (the only place they are
// filled; the defaults are the options').
// `headers` is options::headers parsed once (parse_header_lines); without it they are parsed here.
long_polling_config make_long_polling_config(const options& o, const std::string& url,
                                             const header_list& headers);
websocket_config make_websocket_config(const options& o, const std::string& url,
                                       const header_list& headers);
long_polling_config make_long_polling_config(const options& o, const std::string& url);
websocket_config make_websocket_config(const options& o, const std::string& url);

// options::headers as {name, value} pairs (validated already: every line has its colon).
header_list parse_header_lines(const std::vector<std::string>& lines);

}  // namespace uvcometd::detail
