//! How user-supplied names become parts of Redis keys.
//!
//! Names go inside hash tags (`rk:{lk:NAME}:h`) so that the keys a script touches together
//! share a Cluster slot. A name must neither move the hash tag (a `}` would end it early)
//! nor collide with another name once joined with `:`. [`encode`] percent-encodes the
//! four characters that could do either (`%`, `{`, `}`, `:`), which keeps every other name
//! readable in `redis-cli` and makes the mapping one-to-one.

use std::borrow::Cow;

/// `name` with `%`, `{`, `}` and `:` percent-encoded (one-to-one, so no two names collide).
pub fn encode(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(|b| matches!(b, b'%' | b'{' | b'}' | b':')) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn names_neither_move_the_hash_tag_nor_collide() {
        assert_eq!(encode("user-42"), "user-42");
        assert_eq!(encode("l}:f"), "l%7D%3Af");
        assert!(!encode("a}b{c").contains(['{', '}']));
        // `login` + `user:42` and `login:user` + `42` stay apart once joined with ':'.
        let joined = |a: &str, b: &str| format!("{}:{}", encode(a), encode(b));
        assert_ne!(joined("login", "user:42"), joined("login:user", "42"));
        assert_ne!(encode("%3A"), encode(":"));
        assert_eq!(encode("café:1"), "café%3A1");
    }
}
