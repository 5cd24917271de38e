// SPDX-License-Identifier: Apache-2.0
// The one translation unit that compiles Asio, Asio.SSL and Beast (separate compilation, as
// Beast's own test/lib_*.cpp do), so that no other file pays for their definitions.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
