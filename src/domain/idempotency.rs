//! The `Idempotency-Key` rule: a key seen with the same request replays the first answer; seen
//! with another request it is refused; unseen, the request goes ahead and claims it.

/// What a request with a key gets, given the first answer `T` stored under that key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUse<T> {
    /// The key is new: handle the request and store its answer under the key.
    First,
    /// The same request again: answer what was answered the first time.
    Replay(T),
    /// Another request under a used key: refuse it.
    Reused,
}

/// Judge a request hashing to `request_hash` against what was stored under its key, if anything:
/// the stored request's hash and its answer.
pub fn judge_key<T>(stored: Option<(&str, T)>, request_hash: &str) -> KeyUse<T> {
    match stored {
        None => KeyUse::First,
        Some((hash, answer)) if hash == request_hash => KeyUse::Replay(answer),
        Some(_) => KeyUse::Reused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unseen_key_goes_ahead() {
        assert_eq!(judge_key::<u16>(None, "h1"), KeyUse::First);
    }

    #[test]
    fn the_same_request_replays_the_first_answer() {
        assert_eq!(judge_key(Some(("h1", 202)), "h1"), KeyUse::Replay(202));
    }

    #[test]
    fn another_request_under_the_key_is_refused() {
        assert_eq!(judge_key(Some(("h1", 202)), "h2"), KeyUse::Reused);
    }
}
