// SPDX-License-Identifier: Apache-2.0
// The fuzz targets' main() when they are not built with libFuzzer (the ordinary and sanitized
// builds): every file of the seed corpus, then a fixed number of seeded mutations of them
// (bit flips, byte changes, insertions, deletions, duplications, splices, truncations). Not
// coverage-guided, but every run is reproducible, and under `make test-asan` every input is
// checked by AddressSanitizer and UndefinedBehaviorSanitizer.
//   fuzz_x CORPUS_DIR [--mutations N] [--seed S]
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Bytes = std::vector<std::uint8_t>;

// The input being run, written to ./fuzz-failure when the target aborts (a finding, or a
// sanitizer report with abort_on_error), so that the finding can be replayed and kept.
const Bytes* g_current = nullptr;

void save_current(int sig) {
  if (g_current != nullptr) {
    if (std::FILE* f = std::fopen("fuzz-failure", "wb")) {
      std::fwrite(g_current->data(), 1, g_current->size(), f);
      std::fclose(f);
      std::fprintf(stderr, "the failing input is in ./fuzz-failure (%zu bytes)\n",
                   g_current->size());
    }
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run(const Bytes& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(input.data(), input.size());
  g_current = nullptr;
}

void mutate(Bytes& b, const std::vector<Bytes>& corpus, std::mt19937_64& rng) {
  auto pick = [&](std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng() % n); };
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 7) {
      case 0:  // flip a bit
        if (!b.empty()) {
          b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        }
        break;
      case 1:  // set a byte to an interesting value
        if (!b.empty()) {
          static constexpr std::uint8_t kValues[] = {0,   1,   0x7f, 0x80, 0xff, '"', '\\', '{',
                                                     '}', '[', ']',  ',',  ':',  '-', '\r', '\n'};
          b[pick(b.size())] = kValues[pick(sizeof kValues)];
        }
        break;
      case 2: {  // insert random bytes
        const std::size_t at = pick(b.size() + 1);
        const std::size_t n = 1 + pick(16);
        Bytes extra(n);
        for (auto& x : extra) {
          x = static_cast<std::uint8_t>(rng());
        }
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), extra.begin(), extra.end());
        break;
      }
      case 3:  // delete a range
        if (!b.empty()) {
          const std::size_t at = pick(b.size());
          const std::size_t n = 1 + pick(std::min<std::size_t>(32, b.size() - at));
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
                  b.begin() + static_cast<std::ptrdiff_t>(at + n));
        }
        break;
      case 4:  // duplicate a range
        if (!b.empty() && b.size() < (1u << 20)) {
          const std::size_t at = pick(b.size());
          const std::size_t n = 1 + pick(std::min<std::size_t>(64, b.size() - at));
          const Bytes copy(b.begin() + static_cast<std::ptrdiff_t>(at),
                           b.begin() + static_cast<std::ptrdiff_t>(at + n));
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)), copy.begin(),
                   copy.end());
        }
        break;
      case 5: {  // splice with another input
        const Bytes& other = corpus[pick(corpus.size())];
        if (!other.empty()) {
          const std::size_t from = pick(other.size());
          b.resize(pick(b.size() + 1));
          b.insert(b.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
        }
        break;
      }
      default:  // truncate
        b.resize(pick(b.size() + 1));
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR [--mutations N] [--seed S]\n";
    return 2;
  }
  std::size_t mutations = 10'000;
  std::uint64_t seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--mutations") {
      mutations = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--seed") {
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    }
  }
  std::vector<Bytes> corpus;
  for (const auto& entry : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream in(entry.path(), std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) {
    std::cerr << "no seed inputs in " << argv[1] << "\n";
    return 2;
  }
  std::signal(SIGABRT, save_current);
  std::signal(SIGSEGV, save_current);
  for (const auto& input : corpus) {
    run(input);
  }
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < mutations; ++i) {
    Bytes input = corpus[static_cast<std::size_t>(rng() % corpus.size())];
    mutate(input, corpus, rng);
    run(input);
  }
  std::cout << argv[0] << ": " << corpus.size() << " seeds, " << mutations << " mutations\n";
  return 0;
}
