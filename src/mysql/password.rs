//! Password hashes as MySQL and MariaDB store them, computed here so that a
//! password never has to travel inside SQL text (servers show statements
//! in their process list and logs).

use sha1::{Digest, Sha1};

/// The `mysql_native_password` hash of `password`: `*` and the upper-case
/// hex of SHA1(SHA1(password)), what `mysql.user.authentication_string`
/// holds and `IDENTIFIED ... AS`/`USING` accepts.
pub fn native_password_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    let mut out = String::with_capacity(41);
    out.push('*');
    for b in outer {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_the_server_computes() {
        // SELECT PASSWORD('password') on MariaDB / MySQL 5.7.
        assert_eq!(
            native_password_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert_eq!(native_password_hash("").len(), 41);
    }
}
