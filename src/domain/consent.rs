//! Consent by reply: the keywords that opt a number out of a sender's messages, or back in.
//! Keywords are matched on the whole reply after width, case and kana folding, so "ｓｔｏｐ",
//! "Stop.", "ｽﾄｯﾌﾟ" and "停止" all count, and "please don't stop" does not. A short reply that
//! asks to stop inside a sentence (「停止してください」) changes nothing by itself: it is held
//! for a person to review.

use unicode_normalization::UnicodeNormalization;

/// Replies that opt out (carriers' and Twilio's English words, and the Japanese ones).
pub const OPT_OUT_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "停止",
    "配信停止",
    "ストップ",
    "停止希望",
    "配信停止希望",
];

/// Replies that opt out only where they mean nothing else: appointment flows use them to cancel
/// a booking (`[opt_outs] ambiguous_words_opt_out`).
pub const AMBIGUOUS_OPT_OUT_WORDS: &[&str] = &["CANCEL", "解除"];

/// Replies that opt back in.
pub const OPT_IN_WORDS: &[&str] = &["START", "UNSTOP", "再開"];

/// Words that, inside a short reply, ask to stop: English ones whole words, Japanese ones
/// anywhere. CANCEL, 解除, END and QUIT are not among them: in a sentence they mostly mean
/// something else ("cancel my booking", "see you at the end").
const STOP_WORDS_IN_A_SENTENCE: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT"];
const STOP_PHRASES_IN_A_SENTENCE: &[&str] = &["停止", "ストップ", "配信不要", "送らないで"];

/// Longest reply (in characters) looked at for a request to stop inside a sentence: one
/// Japanese SMS part. Longer replies are conversations the CRM's people read anyway.
pub const REVIEW_MAX_CHARS: usize = 70;

/// What a reply says about consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    /// No more messages from this sender.
    OptOut,
    /// Messages from this sender are welcome again.
    OptIn,
}

impl Consent {
    /// Whether the number is opted out after it.
    pub fn opted_out(self) -> bool {
        self == Consent::OptOut
    }
}

/// How a reply reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A keyword: the number's consent changes.
    Keyword(Consent),
    /// Asks to stop inside a sentence: held for a person to opt the number out or dismiss.
    Review,
    /// Just a reply.
    Plain,
}

/// The rules replies are read by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keywords {
    /// Whether CANCEL and 解除 opt out; when not, they are plain replies.
    pub ambiguous_opt_out: bool,
}

impl Default for Keywords {
    fn default() -> Self {
        Keywords {
            ambiguous_opt_out: true,
        }
    }
}

impl Keywords {
    /// How `body` reads under these rules.
    pub fn read(self, body: &str) -> Reading {
        let folded = fold(body);
        let word: String = folded
            .trim_matches(|c: char| {
                c.is_whitespace() || c.is_ascii_punctuation() || "。、！？「」『』・".contains(c)
            })
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let word = word.as_str();
        if OPT_OUT_WORDS.contains(&word)
            || (self.ambiguous_opt_out && AMBIGUOUS_OPT_OUT_WORDS.contains(&word))
        {
            Reading::Keyword(Consent::OptOut)
        } else if OPT_IN_WORDS.contains(&word) {
            Reading::Keyword(Consent::OptIn)
        } else if asks_to_stop(&folded) {
            Reading::Review
        } else {
            Reading::Plain
        }
    }
}

/// NFKC (full-width letters, half-width katakana, the ideographic space), upper case, and
/// hiragana as katakana (「すとっぷ」 is ストップ).
fn fold(body: &str) -> String {
    body.nfkc()
        .flat_map(char::to_uppercase)
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Whether a folded reply short enough to look at asks to stop inside a sentence.
fn asks_to_stop(folded: &str) -> bool {
    if folded.chars().count() > REVIEW_MAX_CHARS {
        return false;
    }
    // The phrases are folded like the reply (送らないで has hiragana).
    if STOP_PHRASES_IN_A_SENTENCE
        .iter()
        .any(|p| folded.contains(&fold(p)))
    {
        return true;
    }
    let words: Vec<&str> = folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().any(|w| STOP_WORDS_IN_A_SENTENCE.contains(w))
        || words.windows(2).any(|pair| pair == ["OPT", "OUT"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Reading {
        Keywords::default().read(body)
    }

    #[test]
    fn every_keyword_opts_out_or_in_in_any_width_and_case() {
        for word in OPT_OUT_WORDS.iter().chain(AMBIGUOUS_OPT_OUT_WORDS) {
            assert_eq!(read(word), Reading::Keyword(Consent::OptOut), "{word}");
        }
        for word in OPT_IN_WORDS {
            assert_eq!(read(word), Reading::Keyword(Consent::OptIn), "{word}");
        }
        for reply in [
            "stop",
            " Stop. ",
            "ＳＴＯＰ",
            "ｓｔｏｐ！",
            "「停止」",
            "配信停止。",
            "\u{3000}解除\u{3000}",
            "Stop all",
            "opt out",
        ] {
            assert_eq!(read(reply), Reading::Keyword(Consent::OptOut), "{reply:?}");
        }
        for reply in ["start", "Ｕｎｓｔｏｐ", "再開！"] {
            assert_eq!(read(reply), Reading::Keyword(Consent::OptIn), "{reply:?}");
        }
    }

    #[test]
    fn the_japanese_words_people_type_opt_out_in_katakana_of_either_width_and_in_hiragana() {
        for reply in [
            "ストップ",
            "ｽﾄｯﾌﾟ",
            "すとっぷ",
            "ストップ！",
            "停止希望",
            "配信停止希望。",
            "配信　停止",
            "「配信停止希望」",
        ] {
            assert_eq!(read(reply), Reading::Keyword(Consent::OptOut), "{reply:?}");
        }
    }

    #[test]
    fn cancel_and_kaijo_are_plain_replies_where_they_mean_something_else() {
        let booking = Keywords {
            ambiguous_opt_out: false,
        };
        for reply in ["CANCEL", "cancel", "解除", "解除。"] {
            assert_eq!(booking.read(reply), Reading::Plain, "{reply:?}");
            assert_eq!(read(reply), Reading::Keyword(Consent::OptOut), "{reply:?}");
        }
        assert_eq!(
            booking.read("STOP"),
            Reading::Keyword(Consent::OptOut),
            "the other words still opt out"
        );
    }

    #[test]
    fn a_short_reply_asking_to_stop_in_a_sentence_is_held_for_review() {
        for reply in [
            "停止してください",
            "配信停止でお願いします",
            "停止希望です",
            "予約は停止しないでください",
            "please stop texting me",
            "STOP IT",
            "Stop!!! I never signed up",
            "How do I opt-out?",
            "unsubscribe me please",
            "もうストップで",
            "ｽﾄｯﾌﾟでお願いします",
            "配信不要です",
            "もう送らないでください",
        ] {
            assert_eq!(read(reply), Reading::Review, "{reply:?}");
        }
    }

    #[test]
    fn other_replies_are_just_replies() {
        for reply in [
            "",
            "はい",
            "STOPSTOP",
            "nonstop service, thanks",
            "I stopped by yesterday",
            "予約を解除したい",
            "please cancel my appointment",
            "see you at the end of the week",
            "明日の10時で大丈夫です。",
        ] {
            assert_eq!(read(reply), Reading::Plain, "{reply:?}");
        }
    }

    #[test]
    fn a_long_reply_is_not_looked_at_for_a_request_to_stop() {
        let long = format!("{}停止してください", "あ".repeat(REVIEW_MAX_CHARS));
        assert_eq!(read(&long), Reading::Plain);
        let just_short = format!(
            "{}停止",
            "あ".repeat(REVIEW_MAX_CHARS - "停止".chars().count())
        );
        assert_eq!(read(&just_short), Reading::Review);
    }
}
