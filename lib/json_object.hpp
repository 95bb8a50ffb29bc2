// Reading one member of a JSON object in place, without building anything.
#pragma once

#include <string_view>

namespace uvcometd::detail::json {

// The raw text of `object[key]` (a JSON object's text); empty when absent or not an object.
std::string_view member(std::string_view object, std::string_view key);

}  // namespace uvcometd::detail::json
