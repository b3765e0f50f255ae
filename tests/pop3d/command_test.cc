// Tests for pop3d/command.cc: the command-line parser.
#include "pop3d/command.h"

#include <gtest/gtest.h>

namespace coffer::pop3d {
namespace {

TEST(ParseCommandTest, NameIsUpperCasedAndArgsSplit) {
  auto c = ParseCommand("retr 12");
  EXPECT_EQ(c.error, ParseError::kNone);
  EXPECT_EQ(c.name, "RETR");
  ASSERT_EQ(c.args.size(), 1u);
  EXPECT_EQ(c.args[0], "12");
}

TEST(ParseCommandTest, TrailingCrIsStripped) {
  auto c = ParseCommand("TOP 1 5\r");
  EXPECT_EQ(c.name, "TOP");
  ASSERT_EQ(c.args.size(), 2u);
  EXPECT_EQ(c.args[1], "5");
}

TEST(ParseCommandTest, RestKeepsSpacesForPasswords) {
  auto c = ParseCommand("PASS  my secret  pass");
  EXPECT_EQ(c.rest, " my secret  pass");
  EXPECT_EQ(c.args.size(), 3u);
}

TEST(ParseCommandTest, MultipleSpacesBetweenArgs) {
  auto c = ParseCommand("LIST    3");
  ASSERT_EQ(c.args.size(), 1u);
  EXPECT_EQ(c.args[0], "3");
}

TEST(ParseCommandTest, EmptyAndBlankLines) {
  EXPECT_EQ(ParseCommand("").error, ParseError::kEmpty);
  EXPECT_EQ(ParseCommand("   ").error, ParseError::kEmpty);
  EXPECT_EQ(ParseCommand("\r").error, ParseError::kEmpty);
}

TEST(ParseCommandTest, NulAndControlBytesAreRefused) {
  EXPECT_EQ(ParseCommand(std::string_view("USER a\0b", 8)).error, ParseError::kNulByte);
  EXPECT_EQ(ParseCommand("STAT\x01").error, ParseError::kNulByte);
  EXPECT_EQ(ParseCommand("STAT\x7f").error, ParseError::kNulByte);
  EXPECT_EQ(ParseCommand("PASS a\tb").error, ParseError::kNone);
}

TEST(ParseCommandTest, BadNames) {
  EXPECT_EQ(ParseCommand("ABCDEFGHI").error, ParseError::kBadName);
  EXPECT_EQ(ParseCommand("RE-TR 1").error, ParseError::kBadName);
  EXPECT_EQ(ParseCommand("\xc3\xa9t\xc3\xa9").error, ParseError::kBadName);
}

TEST(ParseCommandTest, TooManyOrTooLongArgs) {
  EXPECT_EQ(ParseCommand("X 1 2 3 4 5 6 7 8 9").error, ParseError::kTooManyArgs);
  EXPECT_EQ(ParseCommand("X 1 2 3 4 5 6 7 8").error, ParseError::kNone);
  EXPECT_EQ(ParseCommand("USER " + std::string(kMaxArgLength + 1, 'a')).error,
            ParseError::kArgTooLong);
}

TEST(ParseCommandTest, Utf8ArgumentsAreAllowed) {
  auto c = ParseCommand("USER j\xc3\xbcrgen@example.org");
  EXPECT_EQ(c.error, ParseError::kNone);
  EXPECT_EQ(c.args[0], "j\xc3\xbcrgen@example.org");
}

TEST(ParseNumberTest, DigitsOnly) {
  EXPECT_EQ(ParseNumber("0"), 0u);
  EXPECT_EQ(ParseNumber("42"), 42u);
  EXPECT_EQ(ParseNumber("999999999"), 999999999u);
  EXPECT_FALSE(ParseNumber(""));
  EXPECT_FALSE(ParseNumber("-1"));
  EXPECT_FALSE(ParseNumber("+1"));
  EXPECT_FALSE(ParseNumber("1a"));
  EXPECT_FALSE(ParseNumber(" 1"));
  EXPECT_FALSE(ParseNumber("1234567890"));  // too many digits
  EXPECT_FALSE(ParseNumber("0x10"));
}

TEST(ParseErrorTextTest, EveryErrorHasText) {
  for (auto e : {ParseError::kNone, ParseError::kEmpty, ParseError::kNulByte, ParseError::kBadName,
                 ParseError::kTooManyArgs, ParseError::kArgTooLong}) {
    EXPECT_FALSE(ParseErrorText(e).empty());
  }
}

}  // namespace
}  // namespace coffer::pop3d
