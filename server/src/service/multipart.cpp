// SPDX-License-Identifier: Apache-2.0
#include "service/multipart.hpp"

#include <algorithm>
#include <cctype>

namespace fwdepot::server {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The value of `param` in a header like `form-data; name="x"; filename="y"`.
std::optional<std::string> header_param(std::string_view value, std::string_view param) {
  std::size_t pos = 0;
  while ((pos = value.find(';', pos)) != std::string_view::npos) {
    ++pos;
    std::string_view rest = trim(value.substr(pos));
    const auto eq = rest.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    if (lower(trim(rest.substr(0, eq))) != param) {
      continue;
    }
    std::string_view v = trim(rest.substr(eq + 1));
    if (!v.empty() && v.front() == '"') {
      const auto end = v.find('"', 1);
      if (end == std::string_view::npos) {
        return std::nullopt;
      }
      return std::string(v.substr(1, end - 1));
    }
    const auto end = v.find(';');
    return std::string(trim(v.substr(0, end)));
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  const auto semi = content_type.find(';');
  if (lower(trim(content_type.substr(0, semi))) != "multipart/form-data") {
    return std::nullopt;
  }
  auto boundary = header_param(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->size() > 70) {
    return std::nullopt;
  }
  return boundary;
}

MultipartParser::MultipartParser(std::string boundary, Handlers handlers)
    : delimiter_("\r\n--" + boundary), handlers_(std::move(handlers)) {
  // The first delimiter may start the body without the leading CRLF; pretend it was there.
  buffer_ = "\r\n";
}

result<void> MultipartParser::fail(std::string why) {
  failure_ = Error(core::error::invalid_argument, "multipart: " + std::move(why));
  return failure_;
}

result<void> MultipartParser::feed(std::string_view bytes) {
  if (failure_.code) {
    return failure_;
  }
  buffer_.append(bytes);
  auto r = step();
  if (!r && !failure_.code) {
    failure_ = r.error();
  }
  return r;
}

result<void> MultipartParser::parse_headers(std::string_view headers) {
  std::optional<std::string> name;
  std::string filename;
  std::size_t pos = 0;
  while (pos < headers.size()) {
    auto end = headers.find("\r\n", pos);
    if (end == std::string_view::npos) {
      end = headers.size();
    }
    const std::string_view line = headers.substr(pos, end - pos);
    pos = end + 2;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return fail("part header without ':'");
    }
    if (lower(trim(line.substr(0, colon))) == "content-disposition") {
      const std::string_view value = trim(line.substr(colon + 1));
      if (lower(value.substr(0, 9)) != "form-data") {
        return fail("part is not form-data");
      }
      name = header_param(value, "name");
      filename = header_param(value, "filename").value_or("");
    }
  }
  if (!name || name->empty()) {
    return fail("part without a Content-Disposition name");
  }
  if (++parts_ > kMaxParts) {
    return fail("more than " + std::to_string(kMaxParts) + " parts");
  }
  return handlers_.on_part_begin(*name, filename);
}

// Consumes as much of buffer_ as the current state allows. Body bytes are passed on as soon as
// they cannot be the start of a delimiter, so at most delimiter_.size() bytes are held back.
result<void> MultipartParser::step() {
  while (true) {
    switch (state_) {
      case State::preamble: {
        const auto at = buffer_.find(delimiter_);
        if (at == std::string::npos) {
          // Keep only what could still be the start of the first delimiter.
          if (buffer_.size() > delimiter_.size()) {
            buffer_.erase(0, buffer_.size() - delimiter_.size());
          }
          return {};
        }
        buffer_.erase(0, at + delimiter_.size());
        state_ = State::after_delimiter;
        break;
      }
      case State::after_delimiter: {
        if (buffer_.size() < 2) {
          return {};
        }
        if (buffer_.compare(0, 2, "--") == 0) {
          buffer_.clear();
          state_ = State::epilogue;
          return {};
        }
        // Transport padding (spaces and tabs, at most kMaxPadding) may follow a delimiter (RFC
        // 2046). The same limit whatever the chunking: the padding's length is checked when its
        // CRLF arrives, and before that only once the buffer cannot end in a padding and a CR.
        const auto crlf = buffer_.find("\r\n");
        if (crlf == std::string::npos) {
          if (buffer_.size() > kMaxPadding + 1) {
            return fail("garbage after a boundary");
          }
          return {};
        }
        if (crlf > kMaxPadding || !trim(std::string_view(buffer_).substr(0, crlf)).empty()) {
          return fail("garbage after a boundary");
        }
        buffer_.erase(0, crlf + 2);
        state_ = State::headers;
        break;
      }
      case State::headers: {
        const auto end = buffer_.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (buffer_.size() > kMaxHeaderBytes) {
            return fail("part headers longer than 8 KiB");
          }
          return {};
        }
        if (end > kMaxHeaderBytes) {
          return fail("part headers longer than 8 KiB");
        }
        const std::string headers = buffer_.substr(0, end);
        buffer_.erase(0, end + 4);
        if (auto r = parse_headers(headers); !r) {
          return r;
        }
        state_ = State::body;
        break;
      }
      case State::body: {
        const auto at = buffer_.find(delimiter_);
        if (at == std::string::npos) {
          const std::size_t keep = std::min(buffer_.size(), delimiter_.size() - 1);
          const std::size_t emit = buffer_.size() - keep;
          if (emit > 0) {
            if (auto r = handlers_.on_part_data(std::string_view(buffer_).substr(0, emit)); !r) {
              return r;
            }
            buffer_.erase(0, emit);
          }
          return {};
        }
        if (at > 0) {
          if (auto r = handlers_.on_part_data(std::string_view(buffer_).substr(0, at)); !r) {
            return r;
          }
        }
        buffer_.erase(0, at + delimiter_.size());
        if (auto r = handlers_.on_part_end(); !r) {
          return r;
        }
        state_ = State::after_delimiter;
        break;
      }
      case State::epilogue:
        buffer_.clear();  // ignored, as RFC 2046 says
        return {};
    }
  }
}

result<void> MultipartParser::finish() {
  if (failure_.code) {
    return failure_;
  }
  if (state_ != State::epilogue) {
    return fail("body ended before the closing boundary (truncated upload?)");
  }
  return {};
}

}  // namespace fwdepot::server
