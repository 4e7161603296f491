// Behaviour tests for the filter language. The cases marked "containerd" are the inputs and
// outcomes of containerd 1.6.20's filters/filter_test.go and scanner_test.go; the rest pin
// down the corners of the Go implementation we reproduce (error positions, quoting, Unicode,
// missing fields).
#include "common/filters.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace berth::filters {
namespace {

using namespace std::string_literals;

struct ExpectedSelector {
  ExpectedSelector(std::vector<std::string> f, Op o = Op::kPresent, std::string v = "")
      : fieldpath(std::move(f)), op(o), value(std::move(v)) {}
  std::vector<std::string> fieldpath;
  Op op;
  std::string value;
};

std::string OpName(Op op) {
  switch (op) {
    case Op::kPresent: return "?";
    case Op::kEqual: return "==";
    case Op::kNotEqual: return "!=";
    case Op::kMatches: return "~=";
  }
  return "unknown";
}

std::string Describe(const std::vector<std::string>& fieldpath, Op op, const std::string& value) {
  std::string out;
  for (const auto& f : fieldpath) out += "[" + f + "]";
  return out + " " + OpName(op) + " [" + value + "]";
}

// ---------------------------------------------------------------------------------------------
// Parsing: valid expressions and the selectors they produce.

struct ValidCase {
  std::string input;
  std::vector<ExpectedSelector> selectors;
};

class ParseValidTest : public testing::TestWithParam<ValidCase> {};

TEST_P(ParseValidTest, ProducesSelectors) {
  const ValidCase& c = GetParam();
  Result<Filter> filter = Parse(c.input);
  ASSERT_TRUE(filter.has_value()) << filter.error().message();
  ASSERT_EQ(filter->alternatives().size(), 1u);
  const std::vector<Selector>& got = filter->alternatives()[0];
  ASSERT_EQ(got.size(), c.selectors.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const ExpectedSelector& want = c.selectors[i];
    EXPECT_EQ(Describe(got[i].fieldpath, got[i].op, got[i].value),
              Describe(want.fieldpath, want.op, want.value))
        << "selector " << i;
    EXPECT_EQ(got[i].regex != nullptr, want.op == Op::kMatches) << "selector " << i;
  }
}

const ValidCase kValidCases[] = {
    // containerd: filter_test.go and scanner_test.go inputs that parse.
    {"name", {{{"name"}}}},
    {"labels.foo", {{{"labels", "foo"}}}},
    {"labels.foo,name", {{{"labels", "foo"}}, {{"name"}}}},
    {"labels.foo==true", {{{"labels", "foo"}, Op::kEqual, "true"}}},
    {"labels.foo==omg_asdf.asdf-qwer", {{{"labels", "foo"}, Op::kEqual, "omg_asdf.asdf-qwer"}}},
    {"name!=bar", {{{"name"}, Op::kNotEqual, "bar"}}},
    {"name==bar,labels.bar", {{{"name"}, Op::kEqual, "bar"}, {{"labels", "bar"}}}},
    {R"(other=="too complex, yo")", {{{"other"}, Op::kEqual, "too complex, yo"}}},
    {"other~=[abc]+,name!=foo",
     {{{"other"}, Op::kMatches, "[abc]+"}, {{"name"}, Op::kNotEqual, "foo"}}},
    {"other~=/[abc]+/,name!=foo",
     {{{"other"}, Op::kMatches, "[abc]+"}, {{"name"}, Op::kNotEqual, "foo"}}},
    {"other~=/[abc]{1,2}/,name!=foo",
     {{{"other"}, Op::kMatches, "[abc]{1,2}"}, {{"name"}, Op::kNotEqual, "foo"}}},
    {R"(other~=/[abc]{0,1}"\//,name!=foo)",
     {{{"other"}, Op::kMatches, R"([abc]{0,1}"/)"}, {{"name"}, Op::kNotEqual, "foo"}}},
    {R"(name==foo,labels."more complex label")",
     {{{"name"}, Op::kEqual, "foo"}, {{"labels", "more complex label"}}}},
    {R"(labels."more complex label with \\ and \""==present)",
     {{{"labels", R"(more complex label with \ and ")"}, Op::kEqual, "present"}}},
    {R"(labels."more complex label with \\ and \"".post==present)",
     {{{"labels", R"(more complex label with \ and ")", "post"}, Op::kEqual, "present"}}},
    {"name==value,foo!=bar", {{{"name"}, Op::kEqual, "value"}, {{"foo"}, Op::kNotEqual, "bar"}}},
    {"name~=[abc]\\+", {{{"name"}, Op::kMatches, "[abc]\\+"}}},
    {"name~=/[abc]{0,2}/", {{{"name"}, Op::kMatches, "[abc]{0,2}"}}},
    {"name~=牛,labels.moo", {{{"name"}, Op::kMatches, "牛"}, {{"labels", "moo"}}}},
    {"name~=|牛|,labels.moo", {{{"name"}, Op::kMatches, "牛"}, {{"labels", "moo"}}}},
    {R"(name~="asdf\n\tfooo")", {{{"name"}, Op::kMatches, "asdf\n\tfooo"}}},
    {"foo == bar", {{{"foo"}, Op::kEqual, "bar"}}},
    {"compound.labels==punctuated_value.foo-bar",
     {{{"compound", "labels"}, Op::kEqual, "punctuated_value.foo-bar"}}},
    {R"("leading quote".postquote==value)",
     {{{"leading quote", "postquote"}, Op::kEqual, "value"}}},
    {R"(input~=/foo\/bar/,id!=ff)",
     {{{"input"}, Op::kMatches, "foo/bar"}, {{"id"}, Op::kNotEqual, "ff"}}},
    {"input~=|foo/bar|,id!=ff",
     {{{"input"}, Op::kMatches, "foo/bar"}, {{"id"}, Op::kNotEqual, "ff"}}},

    // Label keys with dots and slashes must be quoted; unquoted dots split the path.
    {R"(labels."containerd.io/gc.root")", {{{"labels", "containerd.io/gc.root"}}}},
    {R"(labels."containerd.io/gc.root"==true)",
     {{{"labels", "containerd.io/gc.root"}, Op::kEqual, "true"}}},
    {"labels.containerd.io", {{{"labels", "containerd", "io"}}}},
    {"target.digest==sha256:abc", {{{"target", "digest"}, Op::kEqual, "sha256:abc"}}},

    // Whitespace: skipped before any token, NBSP included.
    {"  name", {{{"name"}}}},
    {"\tname !=\tbar", {{{"name"}, Op::kNotEqual, "bar"}}},
    {"a==\u00a0b", {{{"a"}, Op::kEqual, "b"}}},
    {"a, b", {{{"a"}}, {{"b"}}}},

    // Fields may start with a digit or '_'.
    {"0a_b==1", {{{"0a_b"}, Op::kEqual, "1"}}},
    {"_", {{{"_"}}}},

    // Unquoted values run to ',' or whitespace and may hold any punctuation.
    {"a==b=c", {{{"a"}, Op::kEqual, "b=c"}}},
    {R"(a==x"y)", {{{"a"}, Op::kEqual, R"(x"y)"}}},
    {"a==x/y|z~!", {{{"a"}, Op::kEqual, "x/y|z~!"}}},
    {"a==x.y,b", {{{"a"}, Op::kEqual, "x.y"}, {{"b"}}}},
    {R"(a==\x41)", {{{"a"}, Op::kEqual, R"(\x41)"}}},  // no unescaping outside quotes
    {"a==b,c~=d", {{{"a"}, Op::kEqual, "b"}, {{"c"}, Op::kMatches, "d"}}},
    {"a==name", {{{"a"}, Op::kEqual, "name"}}},
    {"a==😀", {{{"a"}, Op::kEqual, "😀"}}},
    // Only the runes after the first are checked: a value may start with a control character
    // or a format character such as U+200B.
    {"a==\x01x", {{{"a"}, Op::kEqual, "\x01x"}}},
    {"a==\u200bx", {{{"a"}, Op::kEqual, "\u200bx"}}},

    // Quoted values.
    {R"(a=="x,y")", {{{"a"}, Op::kEqual, "x,y"}}},
    {R"(a=="")", {{{"a"}, Op::kEqual, ""}}},
    {R"(a!="")", {{{"a"}, Op::kNotEqual, ""}}},
    {"a~=//", {{{"a"}, Op::kMatches, ""}}},
    {"a~=||", {{{"a"}, Op::kMatches, ""}}},
    {R"(a~="x|y")", {{{"a"}, Op::kMatches, "x|y"}}},
    {R"(a~=|\|x|)", {{{"a"}, Op::kMatches, "|x"}}},
    {R"(a~=|x/y"z|)", {{{"a"}, Op::kMatches, R"(x/y"z)"}}},
    {R"(a~=/\\d+/)", {{{"a"}, Op::kMatches, R"(\d+)"}}},
    {R"("a"=="b")", {{{"a"}, Op::kEqual, "b"}}},
    {R"("a b"."c.d".e)", {{{"a b", "c.d", "e"}}}},
    {R"("")", {{{""}}}},

    // Go escapes inside quotes.
    {R"(a=="\a\b\f\n\r\t\v\\\"")", {{{"a"}, Op::kEqual, "\a\b\f\n\r\t\v\\\""}}},
    {R"(a=="\x41\101\u00e9\U0001F600")", {{{"a"}, Op::kEqual, "AA\u00e9\U0001F600"}}},
    {R"(a=="\000\377\xff")", {{{"a"}, Op::kEqual, "\0\xff\xff"s}}},  // raw bytes
    {R"(a=="\u0041")", {{{"a"}, Op::kEqual, "A"}}},
    {R"(a=="\U0010FFFF")", {{{"a"}, Op::kEqual, "\U0010FFFF"}}},
    // Quirks of containerd's unquote: surrogates become U+FFFD, and \U values with the top
    // bit set wrap negative in Go's int32 and come out as their low byte.
    {R"(a=="\uD800")", {{{"a"}, Op::kEqual, "\xef\xbf\xbd"}}},
    {R"(a=="\U80000041")", {{{"a"}, Op::kEqual, "A"}}},
    {R"(a=="\UFFFFFFFF")", {{{"a"}, Op::kEqual, "\xff"}}},
    {R"(a~=/\/\n/)", {{{"a"}, Op::kMatches, "/\n"}}},
    {R"(a~=|\||)", {{{"a"}, Op::kMatches, "|"}}},
};

INSTANTIATE_TEST_SUITE_P(Filters, ParseValidTest, testing::ValuesIn(kValidCases));

// ---------------------------------------------------------------------------------------------
// Parsing: invalid expressions and containerd's exact messages.

struct InvalidCase {
  std::string input;
  std::string message;
};

class ParseInvalidTest : public testing::TestWithParam<InvalidCase> {};

TEST_P(ParseInvalidTest, FailsWithMessage) {
  const InvalidCase& c = GetParam();
  Result<Filter> filter = Parse(c.input);
  ASSERT_FALSE(filter.has_value());
  EXPECT_EQ(filter.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(filter.error().message(), c.message);

  // ParseAll reports the same error; containerd's text is this message plus the class.
  std::vector<std::string> exprs = {"name", c.input};
  Result<Filter> all = ParseAll(exprs);
  ASSERT_FALSE(all.has_value());
  EXPECT_EQ(all.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(all.error().ToString(), c.message + ": invalid argument");
}

const std::string kExpectedOperator = R"(expected an operator ("=="|"!="|"~="))";

const InvalidCase kInvalidCases[] = {
    // containerd: filter_test.go.
    {"labels.|foo|==omg_asdf.asdf-qwer",
     "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered"},
    {R"(labels.?"more complex label with \\ and \"".post==present)",
     R"(filters: parse error: [labels. >|?|< "more complex label with \\ and \"".post==present]: )"
     "expected field or quoted"},
    {"name==foo,", "filters: parse error: [name==foo,]: expected field or quoted"},
    {"labels.", "filters: parse error: [labels.]: expected field or quoted"},
    {"image~=,id?=?fbaq",
     "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted"},
    {"labels.ns/key==value",
     "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated"},
    {"labels.key==/value",
     "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated"},

    // containerd: scanner_test.go inputs, as the parser sees them.
    {"name==value,labels.foo=value,other.bar~=match",
     "filters: parse error: [name==value,labels.foo >|=|< value,other.bar~=match]: "
     "unsupported operator \"=\""},
    {"name~=[abc]+,foo=test",
     "filters: parse error: [name~=[abc]+,foo >|=|< test]: unsupported operator \"=\""},
    {"foo = bar    ", "filters: parse error: [foo  >|=|<  bar    ]: unsupported operator \"=\""},
    {"interrupted=", "filters: parse error: [interrupted >|=|< ]: unsupported operator \"=\""},
    {"doublevalue==value value",
     "filters: parse error: [doublevalue==value >| |< value]: unexpected input:  "},
    {"input==,id!=ff", "filters: parse error: [input== >|,|< id!=ff]: expected value or quoted"},
    {"foo\0bar"s, "filters: parse error: [foo >|\0|< bar]: unexpected null"s},
    {"labels.containerd.io/key==value",
     "filters: parse error: [labels.containerd.io >|/|< key==value]: "
     "quoted literal not terminated"},
    {"labels.\"containerd.io\nkey\"==value",
     "filters: parse error: [labels. >|\"|< containerd.io\nkey\"==value]: "
     "quoted literal not terminated"},
    {R"(labels."\g")", R"(filters: parse error: [labels. >|"|< \g"]: illegal escape sequence)"},
    {R"(labels."\xaz")",
     R"(filters: parse error: [labels. >|"|< \xaz"]: illegal numeric escape sequence)"},

    // Empty pieces.
    {" ", "filters: parse error: [ ]: expected field or quoted"},
    {"\t\n", "filters: parse error: [\t\n]: expected field or quoted"},
    {",", "filters: parse error: [ >|,|< ]: expected field or quoted"},
    {",a", "filters: parse error: [ >|,|< a]: expected field or quoted"},
    {"a,,b", "filters: parse error: [a, >|,|< b]: expected field or quoted"},
    {".a", "filters: parse error: [ >|.|< a]: expected field or quoted"},
    {"a..b", "filters: parse error: [a. >|.|< b]: expected field or quoted"},
    {"a.,b", "filters: parse error: [a. >|,|< b]: expected field or quoted"},
    {"==a", "filters: parse error: [ >|=|< =a]: expected field or quoted"},
    {"a.==b", "filters: parse error: [a. >|=|< =b]: expected field or quoted"},

    // Operators.
    {"name===foo", "filters: parse error: [name >|=|< ==foo]: unsupported operator \"===\""},
    {"name=foo", "filters: parse error: [name >|=|< foo]: unsupported operator \"=\""},
    {"name!foo", "filters: parse error: [name >|!|< foo]: unsupported operator \"!\""},
    {"name~foo", "filters: parse error: [name >|~|< foo]: unsupported operator \"~\""},
    {"name=~foo", "filters: parse error: [name >|=|< ~foo]: unsupported operator \"=~\""},
    {"name==!x", "filters: parse error: [name >|=|< =!x]: unsupported operator \"==!\""},
    {"name foo", "filters: parse error: [name  >|f|< oo]: " + kExpectedOperator},
    {"name?", "filters: parse error: [name >|?|< ]: " + kExpectedOperator},
    {"name>3", "filters: parse error: [name >|>|< 3]: " + kExpectedOperator},
    {"name\"x\"", "filters: parse error: [name >|\"|< x\"]: " + kExpectedOperator},

    // Values.
    {"name==", "filters: parse error: [name==]: expected value or quoted"},
    {"name== ", "filters: parse error: [name== ]: expected value or quoted"},
    {"name==.x", "filters: parse error: [name== >|.|< x]: expected value or quoted"},
    // A value can't start with '.', so an unquoted regex can't either.
    {"name~=.*", "filters: parse error: [name~= >|.|< *]: expected value or quoted"},
    {"name== ==x", "filters: parse error: [name==  >|=|< =x]: expected value or quoted"},
    // Trailing whitespace after a value is not skipped.
    {"name==foo ", "filters: parse error: [name==foo >| |< ]: unexpected input:  "},
    {"name==foo ,a", "filters: parse error: [name==foo >| |< ,a]: unexpected input:  "},
    {"a , b", "filters: parse error: [a  >|,|<  b]: " + kExpectedOperator},
    {"name ,a", "filters: parse error: [name  >|,|< a]: " + kExpectedOperator},
    {R"(name=="foo"bar)", R"(filters: parse error: [name=="foo" >|b|< ar]: unexpected input: b)"},
    {R"(name~=/foo/.x)", R"(filters: parse error: [name~=/foo/ >|.|< x]: unexpected input: .)"},
    // A value's later runes must be letters, marks, numbers, punctuation or symbols.
    {"a==b\x01", "filters: parse error: [a==b >|\x01|< ]: unexpected input: \x01"},
    {"a==x\u200b",
     "filters: parse error: [a==x >|\xe2|< \x80\x8b]: unexpected input: \u200b"},
    {"a==x\u00ad", "filters: parse error: [a==x >|\xc2|< \xad]: unexpected input: \u00ad"},
    {"a==x\ue000", "filters: parse error: [a==x >|\xee|< \x80\x80]: unexpected input: \ue000"},
    // ... as of Unicode 13 (Go 1.19/1.20): these were assigned only in Unicode 14.
    {"a==x\u0870", "filters: parse error: [a==x >|\xe0|< \xa1\xb0]: unexpected input: \u0870"},
    {"a==x\U0001FAE0",
     "filters: parse error: [a==x >|\xf0|< \x9f\xab\xa0]: unexpected input: \U0001FAE0"},

    // /.../ and |...| only quote ~= values.
    {"name==/foo/", "filters: parse error: [name== >|/|< foo/]: invalid quote encountered"},
    {"name!=|foo|", "filters: parse error: [name!= >|||< foo|]: invalid quote encountered"},
    {"/name/", "filters: parse error: [ >|/|< name/]: invalid quote encountered"},
    {"a./b/==c", "filters: parse error: [a. >|/|< b/==c]: invalid quote encountered"},
    {"|a|~=b", "filters: parse error: [ >|||< a|~=b]: invalid quote encountered"},

    // Quoted literals.
    {R"(a=="x)", R"(filters: parse error: [a== >|"|< x]: quoted literal not terminated)"},
    {R"(a~=/x)", R"(filters: parse error: [a~= >|/|< x]: quoted literal not terminated)"},
    {"a==\"x\ny\"", "filters: parse error: [a== >|\"|< x\ny\"]: quoted literal not terminated"},
    {R"(a=="\)", R"(filters: parse error: [a== >|"|< \]: illegal escape sequence)"},
    {R"(a=="\'")", R"(filters: parse error: [a== >|"|< \'"]: illegal escape sequence)"},
    {R"(a~=/\"/)", R"(filters: parse error: [a~= >|/|< \"/]: illegal escape sequence)"},
    {R"(a~=|\/|)", R"(filters: parse error: [a~= >|||< \/|]: illegal escape sequence)"},
    {R"(a~=/\d/)", R"(filters: parse error: [a~= >|/|< \d/]: illegal escape sequence)"},
    {R"(a=="\x4")", R"(filters: parse error: [a== >|"|< \x4"]: illegal numeric escape sequence)"},
    {R"(a=="\12")", R"(filters: parse error: [a== >|"|< \12"]: illegal numeric escape sequence)"},
    {R"(a=="\u12")", R"(filters: parse error: [a== >|"|< \u12"]: illegal numeric escape sequence)"},
    {R"(a=="\U0001F60")",
     R"(filters: parse error: [a== >|"|< \U0001F60"]: illegal numeric escape sequence)"},
    // Escapes the lexer lets through but unquoting rejects.
    {R"(a=="\777")",
     R"(filters: parse error: [a== >|"|< \777"]: unquoting failed: quote syntax error)"},
    {R"(a=="\U00110000")",
     R"(filters: parse error: [a== >|"|< \U00110000"]: unquoting failed: quote syntax error)"},
    // The first error found sticks, even when scanning goes on to find another.
    {"a==\"\\g\0\""s, "filters: parse error: [a== >|\"|< \\g\0\"]: illegal escape sequence"s},
    {"a==\"\\x4\n\"",
     "filters: parse error: [a== >|\"|< \\x4\n\"]: illegal numeric escape sequence"},

    // Bad runes: NUL, invalid UTF-8 and even a well-formed U+FFFD.
    {"\0"s, "filters: parse error: [ >|\0|< ]: unexpected null"s},
    {"a==\0"s, "filters: parse error: [a== >|\0|< ]: unexpected null"s},
    {"name==foo\0"s, "filters: parse error: [name==foo >|\0|< ]: unexpected input: \ufffd"s},
    {"a==\xff", "filters: parse error: [a== >|\xff|< ]: rune error"},
    {"a\xff", "filters: parse error: [a >|\xff|< ]: rune error"},
    {"a==b\xc3", "filters: parse error: [a==b >|\xc3|< ]: unexpected input: \ufffd"},
    {"a==\xed\xa0\x80", "filters: parse error: [a== >|\xed|< \xa0\x80]: rune error"},
    {"a==\xc0\xaf", "filters: parse error: [a== >|\xc0|< \xaf]: rune error"},
    {"a==\ufffd", "filters: parse error: [a== >|\xef|< \xbf\xbd]: rune error"},
    {"a==\"\ufffd\"", "filters: parse error: [a== >|\"|< \ufffd\"]: rune error"},
    {"a==\"\xff\"", "filters: parse error: [a== >|\"|< \xff\"]: rune error"},
    {"a==\"x\0\""s, "filters: parse error: [a== >|\"|< x\0\"]: unexpected null"s},
    // Non-field runes, reported at their first byte.
    {"牛", "filters: parse error: [ >|\xe7|< \x89\x9b]: expected field or quoted"},
    {"a.牛", "filters: parse error: [a. >|\xe7|< \x89\x9b]: expected field or quoted"},
    {"a-b", "filters: parse error: [a >|-|< b]: " + kExpectedOperator},
};

INSTANTIATE_TEST_SUITE_P(Filters, ParseInvalidTest, testing::ValuesIn(kInvalidCases));

TEST(ParseTest, EmptyMatchesAll) {
  Result<Filter> filter = Parse("");
  ASSERT_TRUE(filter.has_value());
  EXPECT_TRUE(filter->MatchesAll());
  EXPECT_TRUE(filter->Match([](std::span<const std::string>) { return std::nullopt; }));
  EXPECT_TRUE(Filter().MatchesAll());
}

TEST(ParseTest, ValidRegexCompiledOnce) {
  Result<Filter> filter = Parse("name~=^a.*z$");
  ASSERT_TRUE(filter.has_value());
  Filter copy = *filter;  // copies share the compiled pattern
  EXPECT_EQ(copy.alternatives()[0][0].regex, filter->alternatives()[0][0].regex);
  EXPECT_NE(copy.alternatives()[0][0].regex, nullptr);
}

TEST(ParseTest, InvalidRegexParsesWithoutPattern) {
  for (std::string expr : {"name~=[", "name~=a**", "name~=\\C", "name~=x{1001}", "name~=\\8",
                           "name~=(?<n>a)", R"(name~="\xff")"}) {
    Result<Filter> filter = Parse(expr);
    ASSERT_TRUE(filter.has_value()) << expr;
    EXPECT_EQ(filter->alternatives()[0][0].regex, nullptr) << expr;
  }
  // \C inside \Q...\E is literal text, and an escaped backslash before C is no \C.
  for (std::string expr : {R"(name~=\Q\C\E)", R"(name~=\\C)", R"(name~=/\\\\C/)", R"(name~=\_)"}) {
    Result<Filter> filter = Parse(expr);
    ASSERT_TRUE(filter.has_value()) << expr;
    EXPECT_NE(filter->alternatives()[0][0].regex, nullptr) << expr;
  }
}

// ---------------------------------------------------------------------------------------------
// Matching.

struct Entry {
  std::string name;
  std::string other;
  std::map<std::string, std::string> labels;
};

// containerd: filter_test.go's corpus and adaptor.
const std::vector<Entry> kCorpus = {
    {"foo", "", {{"foo", "true"}}},
    {"bar", "", {}},
    {"foo", "", {{"foo", "present"}, {"more complex label", "present"}}},
    {"bar", "", {{"bar", "true"}}},
    {"fooer", "", {{"more complex label with \\ and \"", "present"}}},
    {"fooer", "", {{"more complex label with \\ and \".post", "present"}}},
    {"baz", "too complex, yo", {}},
    {"bazo", "abc", {}},
    {"compound", "", {{"foo", "omg_asdf.asdf-qwer"}}},
};

Adaptor AdaptEntry(const Entry& e) {
  return [&e](std::span<const std::string> fieldpath) -> std::optional<std::string> {
    if (fieldpath[0] == "name") {
      if (e.name.empty()) return std::nullopt;
      return e.name;
    }
    if (fieldpath[0] == "other") {
      if (e.other.empty()) return std::nullopt;
      return e.other;
    }
    if (fieldpath[0] == "labels") return LookupMap(e.labels, fieldpath.subspan(1));
    return std::nullopt;
  };
}

std::vector<int> MatchCorpus(const Filter& filter) {
  std::vector<int> matched;
  for (size_t i = 0; i < kCorpus.size(); ++i) {
    if (filter.Match(AdaptEntry(kCorpus[i]))) matched.push_back(static_cast<int>(i));
  }
  return matched;
}

struct CorpusCase {
  std::string input;
  std::vector<int> expected;
};

class CorpusTest : public testing::TestWithParam<CorpusCase> {};

TEST_P(CorpusTest, MatchesLikeContainerd) {
  Result<Filter> filter = Parse(GetParam().input);
  ASSERT_TRUE(filter.has_value()) << filter.error().message();
  EXPECT_EQ(MatchCorpus(*filter), GetParam().expected);
}

const CorpusCase kCorpusCases[] = {
    {"", {0, 1, 2, 3, 4, 5, 6, 7, 8}},
    {"name", {0, 1, 2, 3, 4, 5, 6, 7, 8}},
    {"labels.foo", {0, 2, 8}},
    {"labels.foo,name", {0, 2, 8}},
    {"labels.foo==true", {0}},
    {"labels.foo==omg_asdf.asdf-qwer", {8}},
    {"name==bar", {1, 3}},
    {"name!=bar", {0, 2, 4, 5, 6, 7, 8}},
    {"name==bar,labels.bar", {3}},
    {"other==\"too complex, yo\"", {6}},
    {"other~=[abc]+,name!=foo", {6, 7}},
    {"other~=/[abc]+/,name!=foo", {6, 7}},
    {"other~=/[abc]{1,2}/,name!=foo", {6, 7}},
    {"other~=/[abc]{0,1}\"\\//,name!=foo", {}},
    {"name==bar,labels.bar==true", {3}},
    {"name==bar,labels.bar==wrong", {}},
    {R"(name==foo,labels."more complex label")", {2}},
    {R"(labels."more complex label with \\ and \""==present)", {4}},
    {R"(labels."more complex label with \\ and \"".post==present)", {5}},
};

INSTANTIATE_TEST_SUITE_P(Filters, CorpusTest, testing::ValuesIn(kCorpusCases));

// An image-like object with nested fields and containerd-style label keys.
struct Image {
  std::string name;
  std::string digest;
  std::string media_type;
  std::map<std::string, std::string> labels;
};

Adaptor AdaptImage(const Image& image) {
  return [&image](std::span<const std::string> fieldpath) -> std::optional<std::string> {
    if (fieldpath.empty()) return std::nullopt;
    const std::string& field = fieldpath[0];
    if (field == "name") {
      if (image.name.empty()) return std::nullopt;
      return image.name;
    }
    if (field == "target" && fieldpath.size() == 2) {
      if (fieldpath[1] == "digest") return image.digest;
      if (fieldpath[1] == "mediatype") return image.media_type;
      return std::nullopt;
    }
    if (field == "labels") return LookupMap(image.labels, fieldpath.subspan(1));
    return std::nullopt;
  };
}

const Image kImage = {
    "docker.io/library/busybox:latest",
    "sha256:0123abcd",
    "application/vnd.oci.image.index.v1+json",
    {{"containerd.io/gc.root", "2024-01-01"},
     {"a.b", "dotted"},
     {"empty", ""},
     {"multi\nline", "x"},
     {"nl", "a\nb"}},
};

bool MatchesImage(const std::string& expr) {
  Result<Filter> filter = Parse(expr);
  EXPECT_TRUE(filter.has_value()) << expr << ": " << filter.error().message();
  if (!filter.has_value()) return false;
  return filter->Match(AdaptImage(kImage));
}

TEST(MatchTest, PresenceAndEquality) {
  EXPECT_TRUE(MatchesImage("name"));
  EXPECT_TRUE(MatchesImage("name==docker.io/library/busybox:latest"));
  EXPECT_FALSE(MatchesImage("name==busybox"));
  EXPECT_TRUE(MatchesImage(R"(name=="docker.io/library/busybox:latest")"));
  EXPECT_TRUE(MatchesImage("target.digest==sha256:0123abcd"));
  EXPECT_TRUE(MatchesImage("target.mediatype==application/vnd.oci.image.index.v1+json"));
  EXPECT_FALSE(MatchesImage("target"));
  EXPECT_FALSE(MatchesImage("target.size"));
  EXPECT_FALSE(MatchesImage("nosuchfield"));
  EXPECT_FALSE(MatchesImage("nosuchfield==x"));
}

TEST(MatchTest, Labels) {
  EXPECT_TRUE(MatchesImage(R"(labels."containerd.io/gc.root")"));
  EXPECT_TRUE(MatchesImage(R"(labels."containerd.io/gc.root"==2024-01-01)"));
  EXPECT_FALSE(MatchesImage(R"(labels."containerd.io/gc.root"==2024)"));
  // Unquoted dots split the path; LookupMap joins it back, so both spellings work.
  EXPECT_TRUE(MatchesImage("labels.a.b==dotted"));
  EXPECT_TRUE(MatchesImage(R"(labels."a.b"==dotted)"));
  EXPECT_TRUE(MatchesImage(R"(labels."a".b==dotted)"));
  EXPECT_TRUE(MatchesImage(R"(labels."multi\nline"==x)"));
  EXPECT_FALSE(MatchesImage("labels"));  // LookupMap needs a key
  // A present but empty value.
  EXPECT_TRUE(MatchesImage("labels.empty"));
  EXPECT_TRUE(MatchesImage(R"(labels.empty=="")"));
  EXPECT_FALSE(MatchesImage(R"(labels.empty!="")"));
  EXPECT_TRUE(MatchesImage("labels.empty~=^$"));
}

TEST(MatchTest, NotEqualOnMissingFieldComparesEmptyString) {
  EXPECT_TRUE(MatchesImage("labels.missing!=x"));
  EXPECT_FALSE(MatchesImage(R"(labels.missing!="")"));
  EXPECT_FALSE(MatchesImage(R"(labels.missing=="")"));
  EXPECT_TRUE(MatchesImage("name!=busybox"));
  EXPECT_FALSE(MatchesImage("name!=docker.io/library/busybox:latest"));
}

TEST(MatchTest, RegexOnMissingFieldMatchesEmptyString) {
  EXPECT_TRUE(MatchesImage("labels.missing~=^$"));
  EXPECT_TRUE(MatchesImage("labels.missing~=x*"));
  EXPECT_TRUE(MatchesImage("labels.missing~=//"));
  EXPECT_FALSE(MatchesImage("labels.missing~=/./"));
}

TEST(MatchTest, RegexIsAnUnanchoredSearch) {
  EXPECT_TRUE(MatchesImage("name~=busybox"));
  EXPECT_TRUE(MatchesImage("name~=^docker"));
  EXPECT_FALSE(MatchesImage("name~=^busybox"));
  EXPECT_TRUE(MatchesImage("name~=latest$"));
  EXPECT_TRUE(MatchesImage("name~=/library\\/busy/"));
  EXPECT_TRUE(MatchesImage("name~=|library/busy|"));
  EXPECT_TRUE(MatchesImage("name~=library/busy"));
  EXPECT_TRUE(MatchesImage(R"(name~="library/busy")"));
  EXPECT_TRUE(MatchesImage("name~=(?i)BUSYBOX"));
  EXPECT_FALSE(MatchesImage("name~=BUSYBOX"));
  EXPECT_TRUE(MatchesImage(R"(target.digest~=^sha256:[0-9a-f]+$)"));
  EXPECT_TRUE(MatchesImage(R"(target.digest~=/^sha256:\\w{8}$/)"));
  EXPECT_TRUE(MatchesImage(R"(labels."containerd.io/gc.root"~=^\d{4}-)"));
  // '.' does not match a newline unless (?s) is given.
  EXPECT_FALSE(MatchesImage("labels.nl~=a.b"));
  EXPECT_TRUE(MatchesImage("labels.nl~=(?s)a.b"));
  EXPECT_TRUE(MatchesImage(R"(labels.nl~="^a\nb$")"));
  EXPECT_TRUE(MatchesImage("name~=bus|nothing"));
  EXPECT_TRUE(MatchesImage("name~=\\Q.io/\\E"));
}

TEST(MatchTest, InvalidRegexNeverMatches) {
  EXPECT_FALSE(MatchesImage("name~=["));
  EXPECT_FALSE(MatchesImage("labels.missing~=("));
  EXPECT_FALSE(MatchesImage("name~=\\C"));  // RE2 knows \C; Go's regexp does not
  EXPECT_FALSE(MatchesImage("name~=a**"));
}

TEST(MatchTest, SelectorsAreAnded) {
  EXPECT_TRUE(MatchesImage(R"(name~=busybox,labels."containerd.io/gc.root")"));
  EXPECT_FALSE(MatchesImage("name~=busybox,labels.missing"));
  EXPECT_FALSE(MatchesImage("labels.missing,name~=busybox"));
}

TEST(ParseAllTest, AlternativesAreOred) {
  std::vector<std::string> exprs = {"name==nope", "labels.a.b==dotted"};
  Result<Filter> filter = ParseAll(exprs);
  ASSERT_TRUE(filter.has_value());
  EXPECT_EQ(filter->alternatives().size(), 2u);
  EXPECT_TRUE(filter->Match(AdaptImage(kImage)));

  exprs = {"name==nope", "labels.missing"};
  filter = ParseAll(exprs);
  ASSERT_TRUE(filter.has_value());
  EXPECT_FALSE(filter->Match(AdaptImage(kImage)));
}

TEST(ParseAllTest, CorpusUnion) {
  std::vector<std::string> exprs = {"name==bar", "labels.foo==true", "other~=abc"};
  Result<Filter> filter = ParseAll(exprs);
  ASSERT_TRUE(filter.has_value());
  EXPECT_EQ(MatchCorpus(*filter), (std::vector<int>{0, 1, 3, 7}));
}

TEST(ParseAllTest, NoStringsMatchAll) {
  Result<Filter> filter = ParseAll({});
  ASSERT_TRUE(filter.has_value());
  EXPECT_TRUE(filter->MatchesAll());
  EXPECT_TRUE(filter->Match(AdaptImage(kImage)));
}

TEST(ParseAllTest, AnEmptyStringMatchesAll) {
  std::vector<std::string> exprs = {"name==nope", ""};
  Result<Filter> filter = ParseAll(exprs);
  ASSERT_TRUE(filter.has_value());
  EXPECT_TRUE(filter->MatchesAll());
  EXPECT_EQ(MatchCorpus(*filter).size(), kCorpus.size());
}

TEST(ParseAllTest, EveryStringIsValidatedEvenAfterAnEmptyOne) {
  std::vector<std::string> exprs = {"", "name=="};
  Result<Filter> filter = ParseAll(exprs);
  ASSERT_FALSE(filter.has_value());
  EXPECT_EQ(filter.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(filter.error().message(), "filters: parse error: [name==]: expected value or quoted");
}

TEST(ParseAllTest, WhitespaceIsNotEmpty) {
  std::vector<std::string> exprs = {" "};
  EXPECT_FALSE(ParseAll(exprs).has_value());
}

}  // namespace
}  // namespace berth::filters
