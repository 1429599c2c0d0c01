// The nuScenes results JSON read straight into arrays (pointformer/evaluation/nuscenes_results_scan.py).
//
// A plain C ABI library, loaded with ctypes: no torch and no Python API, so `tools/eval.py nuscenes`
// loads it in a millisecond (numba's import and cache loading took 1-2 s of a 4-5 s evaluation) and
// ctypes releases the GIL around each call, which lets two halves of a file be read at once.
//
// One pass over the bytes checks JSON's grammar and the results schema and writes, per box, its 13
// numbers as float64 (std::from_chars: correctly rounded, the float Python's json reads), its class
// and attribute index and num_pts. Any file outside the common shape (see the Python module's
// docstring) is refused (status 0) and the caller reads it with Python's json, whose boxes or error
// are then the answer; so every rule here only has to be at least as strict as json + the schema.

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>

namespace {

// Slots of a box's numbers: translation 0-2, size 3-5, rotation 6-9, velocity 10-11, score 12.
constexpr int kSlots = 13;
constexpr int kScoreSlot = 12;
constexpr int kFieldWidth[4] = {3, 3, 4, 2};
constexpr int kFieldSlot[4] = {0, 3, 6, 10};
// Box keys, in the order of their codes (0-3: number lists; then the rest).
constexpr const char* kBoxKeys[] = {"translation",     "size",           "rotation", "velocity",    "detection_name",
                                    "detection_score", "attribute_name", "num_pts",  "sample_token"};
constexpr int kNumBoxKeys = 9;
constexpr int kRequired = 0b11111;  // the four lists and detection_name
constexpr int kMaxDepth = 256;
// Integer literals longer than this are refused: Python's float() of such an int may overflow where
// the text would read as infinity.
constexpr int64_t kMaxIntegerDigits = 300;

// A table of words: `count` words, word k in buf[off[k]:off[k + 1]].
struct Words {
  const uint8_t* buf;
  const int64_t* off;
  int64_t count;
};

struct Doc {
  const uint8_t* b;
  int64_t n;

  int64_t ws(int64_t i) const {
    while (i < n) {
      const uint8_t c = b[i];
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
      ++i;
    }
    return i;
  }

  bool digit(int64_t i) const { return i < n && b[i] >= '0' && b[i] <= '9'; }

  bool starts_with(int64_t i, const char* word) const {
    const auto len = static_cast<int64_t>(std::strlen(word));
    return i + len <= n && std::memcmp(b + i, word, len) == 0;
  }

  bool equals(int64_t s, int64_t e, const char* word) const {
    const auto len = static_cast<int64_t>(std::strlen(word));
    return e - s == len && std::memcmp(b + s, word, len) == 0;
  }

  // b[i] is a quote: the index after the closing quote, or -1 (escapes, control or non-ASCII bytes,
  // or no end: outside the fast path).
  int64_t string_end(int64_t i) const {
    for (int64_t j = i + 1; j < n; ++j) {
      const uint8_t c = b[j];
      if (c == '"') return j + 1;
      if (c == '\\' || c < 32 || c >= 128) return -1;
    }
    return -1;
  }

  // Index of b[s:e] among the words, or -1.
  int64_t find(int64_t s, int64_t e, const Words& w) const {
    for (int64_t k = 0; k < w.count; ++k) {
      const int64_t a = w.off[k];
      if (w.off[k + 1] - a == e - s && std::memcmp(b + s, w.buf + a, e - s) == 0) return k;
    }
    return -1;
  }

  int box_key(int64_t s, int64_t e) const {
    for (int k = 0; k < kNumBoxKeys; ++k) {
      if (equals(s, e, kBoxKeys[k])) return k;
    }
    return -1;
  }

  // End of the number at i (JSON's grammar, plus NaN, Infinity and -Infinity, which Python's json
  // reads and writes), or -1.
  int64_t number_end(int64_t i) const {
    if (i < n && (b[i] == 'N' || b[i] == 'I' || b[i] == '-')) {
      if (starts_with(i, "NaN")) return i + 3;
      if (starts_with(i, "Infinity")) return i + 8;
      if (starts_with(i, "-Infinity")) return i + 9;
    }
    int64_t j = i;
    if (j < n && b[j] == '-') ++j;
    if (j >= n) return -1;
    if (b[j] == '0') {
      ++j;
    } else if (b[j] >= '1' && b[j] <= '9') {
      while (digit(j)) ++j;
    } else {
      return -1;
    }
    if (j < n && b[j] == '.') {
      ++j;
      if (!digit(j)) return -1;
      while (digit(j)) ++j;
    }
    if (j < n && (b[j] == 'e' || b[j] == 'E')) {
      ++j;
      if (j < n && (b[j] == '+' || b[j] == '-')) ++j;
      if (!digit(j)) return -1;
      while (digit(j)) ++j;
    }
    return j;
  }

  // A member name at i (after whitespace) and its colon: the name is b[s:e]; next is the index after
  // the colon and whitespace. s = -1 if there is none.
  struct Key {
    int64_t s, e, next;
  };
  Key key(int64_t i) const {
    constexpr Key none{-1, -1, -1};
    i = ws(i);
    if (i >= n || b[i] != '"') return none;
    const int64_t e = string_end(i);
    if (e < 0) return none;
    int64_t j = ws(e);
    if (j >= n || b[j] != ':') return none;
    j = ws(j + 1);
    if (j >= n) return none;
    return {i + 1, e - 1, j};
  }

  // End of the string, literal or number at i, or -1.
  int64_t scalar_end(int64_t i) const {
    if (b[i] == '"') return string_end(i);
    for (const char* word : {"true", "false", "null"}) {
      if (starts_with(i, word)) return i + static_cast<int64_t>(std::strlen(word));
    }
    return number_end(i);
  }

  // The index after the JSON value at i (whitespace first), or -1 if it is not valid.
  int64_t skip_value(int64_t i) const {
    std::array<uint8_t, kMaxDepth> stack;
    int depth = 0;
    i = ws(i);
    while (true) {
      // A value starts at i.
      if (i >= n) return -1;
      const uint8_t c = b[i];
      bool opened = false;
      if (c == '{' || c == '[') {
        const uint8_t close = c == '{' ? '}' : ']';
        int64_t j = ws(i + 1);
        if (j < n && b[j] == close) {
          i = j + 1;
        } else {
          if (depth == kMaxDepth) return -1;
          stack[depth++] = c;
          opened = true;
          if (c == '{') {
            const Key k = key(j);
            if (k.s < 0) return -1;
            j = k.next;
          }
          i = j;
        }
      } else {
        i = scalar_end(i);
        if (i < 0) return -1;
      }
      if (opened) continue;
      // A value ended at i: close containers or move to the next member.
      while (true) {
        if (depth == 0) return i;
        i = ws(i);
        if (i >= n) return -1;
        const uint8_t top = stack[depth - 1];
        if (b[i] == ',') {
          if (top == '{') {
            const Key k = key(i + 1);
            if (k.s < 0) return -1;
            i = k.next;
          } else {
            i = ws(i + 1);
          }
          break;
        }
        if ((top == '{' && b[i] == '}') || (top == '[' && b[i] == ']')) {
          --depth;
          ++i;
        } else {
          return -1;
        }
      }
    }
  }

  // The value of the number b[s:e] (number_end's grammar) as Python's json + float() read it, or
  // false for an integer literal of more than kMaxIntegerDigits digits.
  bool number_value(int64_t s, int64_t e, double* out) const {
    if (equals(s, e, "NaN")) {
      *out = std::numeric_limits<double>::quiet_NaN();
      return true;
    }
    if (equals(s, e, "Infinity") || equals(s, e, "-Infinity")) {
      *out = b[s] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
      return true;
    }
    if (equals(s, e, "-0")) {  // the integer -0 is 0 (json reads an int), not the float -0.0
      *out = 0.0;
      return true;
    }
    if (e - s > kMaxIntegerDigits && std::memchr(b + s, '.', e - s) == nullptr &&
        std::memchr(b + s, 'e', e - s) == nullptr && std::memchr(b + s, 'E', e - s) == nullptr) {
      return false;
    }
    const char* first = reinterpret_cast<const char*>(b + s);
    const char* last = reinterpret_cast<const char*>(b + e);
    const auto result = std::from_chars(first, last, *out);
    if (result.ec == std::errc::result_out_of_range) {
      // Beyond the doubles (1e400, 1e-400): strtod gives what Python does (+-inf, +-0.0 or the
      // nearest subnormal), from a terminated copy.
      const std::string text(first, last);
      *out = std::strtod(text.c_str(), nullptr);
      return true;
    }
    return result.ec == std::errc() && result.ptr == last;
  }
};

// The outputs of one reading (arrays the caller allocated; see pf_results_scan).
struct Out {
  int64_t* samples;  // (lists + 1, 2) sample key spans
  int64_t* counts;   // (lists + 1,) boxes per sample
  double* numbers;   // (cap, 13)
  int64_t* name;     // (cap,)
  int64_t* attr;     // (cap,)
  int64_t* npts;     // (cap,)
  int64_t cap, lists;
  int64_t nb = 0, ns = 0;
  int64_t meta_s = -1, meta_e = -1;
};

// The box object whose '{' is at i, in the sample whose key is b[ks:ke], as box out.nb. Returns the
// index after its '}', or -1 where it is outside the fast path.
int64_t read_box(const Doc& d, int64_t i, int64_t ks, int64_t ke, const Words& names, const Words& attrs, Out& out) {
  const int64_t box = out.nb;
  double* numbers = out.numbers + box * kSlots;
  numbers[kScoreSlot] = -1.0;  // an absent score reads as -1, as in the devkit
  out.attr[box] = 0;           // "" (index 0 of the attribute table)
  out.npts[box] = -1;
  int seen = 0;
  while (true) {  // members of a box
    const Doc::Key k = d.key(i + 1);
    if (k.s < 0) return -1;
    i = k.next;
    const int code = d.box_key(k.s, k.e);
    if (code >= 0) {
      if (seen & (1 << code)) return -1;
      seen |= 1 << code;
    }
    if (code >= 0 && code <= 3) {
      if (d.b[i] != '[') return -1;
      for (int c = 0; c < kFieldWidth[code]; ++c) {
        i = d.ws(i + 1);
        const int64_t j = d.number_end(i);
        if (j < 0 || !d.number_value(i, j, &numbers[kFieldSlot[code] + c])) return -1;
        i = d.ws(j);
        const bool last = c == kFieldWidth[code] - 1;
        if (i >= d.n || d.b[i] != (last ? ']' : ',')) return -1;
      }
      ++i;
    } else if (code == 4 || code == 6 || code == 8) {  // strings
      if (d.b[i] != '"') return -1;
      const int64_t j = d.string_end(i);
      if (j < 0) return -1;
      if (code == 4) {
        out.name[box] = d.find(i + 1, j - 1, names);
        if (out.name[box] < 0) return -1;
      } else if (code == 6) {
        out.attr[box] = d.find(i + 1, j - 1, attrs);
        if (out.attr[box] < 0) return -1;
      } else if (j - 1 - (i + 1) != ke - ks || std::memcmp(d.b + i + 1, d.b + ks, ke - ks) != 0) {
        return -1;  // a sample_token other than its sample's
      }
      i = j;
    } else if (code == 5) {  // detection_score
      const int64_t j = d.number_end(i);
      if (j < 0 || !d.number_value(i, j, &numbers[kScoreSlot])) return -1;
      i = j;
    } else if (code == 7) {  // num_pts: an integer literal of at most 18 digits
      int64_t j = d.b[i] == '-' ? i + 1 : i;
      int64_t v = 0;
      while (d.digit(j) && j - i < 18) {
        v = 10 * v + (d.b[j] - '0');
        ++j;
      }
      if (j == i || d.number_end(i) != j) return -1;
      out.npts[box] = d.b[i] == '-' ? -v : v;
      i = j;
    } else {  // another member: skipped
      i = d.skip_value(i);
      if (i < 0) return -1;
    }
    i = d.ws(i);
    if (i >= d.n) return -1;
    if (d.b[i] == '}') break;
    if (d.b[i] != ',') return -1;
  }
  if ((seen & kRequired) != kRequired) return -1;
  return i + 1;
}

enum Status : int { kFail = 0, kDone = 1, kStopped = 2 };

// See pf_results_scan.
int scan(const Doc& d, int64_t start, int64_t stop, const Words& names, const Words& attrs, Out& out) {
  int64_t i;
  bool seen_results, in_results;
  if (start == 0) {
    i = d.ws(0);
    if (i >= d.n || d.b[i] != '{') return kFail;
    i = d.ws(i + 1);
    if (i < d.n && d.b[i] == '}') return kFail;  // no meta, no results
    --i;                                         // the loop below steps over the brace or comma before each member
    seen_results = in_results = false;
  } else {
    i = start;
    seen_results = in_results = true;
  }
  while (true) {
    if (!in_results) {
      const Doc::Key k = d.key(i + 1);
      if (k.s < 0) return kFail;
      i = k.next;
      if (d.equals(k.s, k.e, "meta")) {
        if (out.meta_s >= 0 || d.b[i] != '{') return kFail;
        const int64_t j = d.skip_value(i);
        if (j < 0) return kFail;
        out.meta_s = i;
        out.meta_e = j;
        i = j;
      } else if (d.equals(k.s, k.e, "results")) {
        if (seen_results || d.b[i] != '{') return kFail;
        seen_results = true;
        i = d.ws(i + 1);
        if (i < d.n && d.b[i] == '}') {
          ++i;
        } else {
          --i;
          in_results = true;
        }
      } else {
        i = d.skip_value(i);
        if (i < 0) return kFail;
      }
    }
    if (in_results) {
      in_results = false;
      while (true) {  // samples; b[i] is the brace or comma before the next one
        const Doc::Key k = d.key(i + 1);
        if (k.s < 0 || d.b[k.next] != '[' || out.ns == out.lists + 1 || (stop >= 0 && k.s > stop)) return kFail;
        i = k.next;
        out.samples[2 * out.ns] = k.s;
        out.samples[2 * out.ns + 1] = k.e;
        out.counts[out.ns] = 0;
        i = d.ws(i + 1);
        if (i < d.n && d.b[i] == ']') {
          ++i;
        } else {
          --i;
          while (true) {  // boxes
            i = d.ws(i + 1);
            if (i >= d.n || d.b[i] != '{' || out.nb == out.cap || (stop >= 0 && i > stop)) return kFail;
            i = read_box(d, i, k.s, k.e, names, attrs, out);
            if (i < 0) return kFail;
            ++out.nb;
            ++out.counts[out.ns];
            i = d.ws(i);
            if (i >= d.n) return kFail;
            if (d.b[i] == ']') {
              ++i;
              break;
            }
            if (d.b[i] != ',') return kFail;
          }
        }
        ++out.ns;
        i = d.ws(i);
        if (i >= d.n) return kFail;
        if (d.b[i] == '}') {
          ++i;
          break;
        }
        if (d.b[i] != ',') return kFail;
        if (i == stop) return kStopped;
      }
    }
    i = d.ws(i);
    if (i >= d.n) return kFail;
    if (d.b[i] == '}') break;
    if (d.b[i] != ',') return kFail;
  }
  if (d.ws(i + 1) != d.n || !seen_results || (start == 0 && out.meta_s < 0)) return kFail;
  return kDone;
}

}  // namespace

extern "C" {

// The number of '{' and of '[' in b[start:end]: bounds on the boxes (objects) and the samples (lists)
// of that part of the file.
void pf_count_open(const uint8_t* b, int64_t start, int64_t end, int64_t* braces, int64_t* brackets) {
  int64_t o = 0, l = 0;
  for (int64_t q = start; q < end; ++q) {
    o += b[q] == '{';
    l += b[q] == '[';
  }
  *braces = o;
  *brackets = l;
}

// Reads the results JSON b[0:n].
//
// start 0 reads the whole document; start > 0 is the index of a comma between two samples of
// "results", where the reading starts (in the state a whole reading is in there) and goes on to the
// document's end. stop (-1: none) is the index of a comma between two samples where the reading ends;
// a reading that meets a sample or box after stop without having stopped there fails (stop was not
// such a comma: the caller reads the whole document instead).
//
// names, attrs: the accepted detection and attribute names (word tables; attribute 0 is "").
// cap, lists: the counts of '{' and '[' in the part read (pf_count_open); the arrays hold cap boxes
// and lists + 1 samples. out_sizes receives (boxes, samples, meta start, meta end), the meta span -1s
// where the part read holds no "meta" (which only a reading from start > 0 leaves to its caller).
//
// Returns 0 (outside the fast path), 1 (read to the end) or 2 (stopped at stop).
int pf_results_scan(const uint8_t* b, int64_t n, int64_t start, int64_t stop, const uint8_t* names_buf,
                    const int64_t* names_off, int64_t num_names, const uint8_t* attrs_buf, const int64_t* attrs_off,
                    int64_t num_attrs, int64_t cap, int64_t lists, int64_t* samples, int64_t* counts, double* numbers,
                    int64_t* name, int64_t* attr, int64_t* npts, int64_t* out_sizes) {
  const Doc d{b, n};
  const Words names{names_buf, names_off, num_names};
  const Words attrs{attrs_buf, attrs_off, num_attrs};
  Out out{samples, counts, numbers, name, attr, npts, cap, lists};
  const int status = scan(d, start, stop, names, attrs, out);
  out_sizes[0] = out.nb;
  out_sizes[1] = out.ns;
  out_sizes[2] = out.meta_s;
  out_sizes[3] = out.meta_e;
  return status;
}

}  // extern "C"
