//! Consent by reply: the keywords that opt a number out of a sender's messages, or back in.
//! One list, matched on the whole reply after width and case folding, so "ｓｔｏｐ", "Stop." and
//! "停止" all count, and "please don't stop" does not.

use unicode_normalization::UnicodeNormalization;

/// Replies that opt out (carriers' and Twilio's English words, and the Japanese ones).
pub const OPT_OUT_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "停止",
    "配信停止",
    "解除",
];

/// Replies that opt back in.
pub const OPT_IN_WORDS: &[&str] = &["START", "UNSTOP", "再開"];

/// What a reply says about consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    /// No more messages from this sender.
    OptOut,
    /// Messages from this sender are welcome again.
    OptIn,
}

impl Consent {
    /// What a reply says, if it is one of the keywords.
    pub fn of_reply(body: &str) -> Option<Consent> {
        // NFKC folds full-width letters and the ideographic space; punctuation around the word
        // (「停止。」, "STOP!") is not part of it.
        let folded: String = body.nfkc().collect::<String>().to_uppercase();
        let word = folded.trim_matches(|c: char| {
            c.is_whitespace() || c.is_ascii_punctuation() || "。、！？「」『』・".contains(c)
        });
        if OPT_OUT_WORDS.contains(&word) {
            Some(Consent::OptOut)
        } else if OPT_IN_WORDS.contains(&word) {
            Some(Consent::OptIn)
        } else {
            None
        }
    }

    /// Whether the number is opted out after it.
    pub fn opted_out(self) -> bool {
        self == Consent::OptOut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_opts_out_or_in_in_any_width_and_case() {
        for word in OPT_OUT_WORDS {
            assert_eq!(Consent::of_reply(word), Some(Consent::OptOut), "{word}");
        }
        for word in OPT_IN_WORDS {
            assert_eq!(Consent::of_reply(word), Some(Consent::OptIn), "{word}");
        }
        for reply in [
            "stop",
            " Stop. ",
            "ＳＴＯＰ",
            "ｓｔｏｐ！",
            "「停止」",
            "配信停止。",
            "\u{3000}解除\u{3000}",
        ] {
            assert_eq!(Consent::of_reply(reply), Some(Consent::OptOut), "{reply:?}");
        }
        for reply in ["start", "Ｕｎｓｔｏｐ", "再開！"] {
            assert_eq!(Consent::of_reply(reply), Some(Consent::OptIn), "{reply:?}");
        }
    }

    #[test]
    fn a_keyword_inside_a_sentence_is_just_a_reply() {
        for reply in [
            "please don't stop",
            "STOP IT",
            "停止しないで",
            "予約を解除したい",
            "",
            "はい",
            "STOPSTOP",
        ] {
            assert_eq!(Consent::of_reply(reply), None, "{reply:?}");
        }
    }
}
