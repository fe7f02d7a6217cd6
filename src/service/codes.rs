//! Referral codes: case-insensitive (kept upper-case), generated from an alphabet without
//! look-alike characters (no 0/O, 1/I/L), long enough not to be guessed.

use crate::error::AppError;
use rand::Rng;

/// The alphabet of generated codes: 31 symbols that cannot be mistaken for one another.
pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// 31⁸ ≈ 8.5 × 10¹¹ codes: guessing one takes far more lookups than the rate limit allows.
pub const GENERATED_LEN: usize = 8;
pub const MIN_LEN: usize = 4;
pub const MAX_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferralCode(String);

impl ReferralCode {
    /// Accepts what a person may type or an admin may choose: 4 to 32 letters and digits, any
    /// case; surrounding blanks are ignored.
    pub fn parse(input: &str) -> Result<Self, AppError> {
        let code = input.trim().to_ascii_uppercase();
        if !(MIN_LEN..=MAX_LEN).contains(&code.len()) {
            return Err(AppError::bad_input(format!(
                "a referral code has {MIN_LEN} to {MAX_LEN} characters"
            )));
        }
        if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(AppError::bad_input("a referral code holds only letters and digits"));
        }
        Ok(ReferralCode(code))
    }

    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let code = (0..GENERATED_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        ReferralCode(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_folds_case_and_refuses_bad_characters() {
        assert_eq!(
            ReferralCode::parse(" cloud21 ").ok().map(ReferralCode::into_string),
            Some("CLOUD21".into())
        );
        assert_eq!(ReferralCode::parse("cloud21").ok(), ReferralCode::parse("CLOUD21").ok());
        assert!(ReferralCode::parse("ab-12").is_err());
        assert!(ReferralCode::parse("abc").is_err());
        assert!(ReferralCode::parse(&"A".repeat(33)).is_err());
        assert!(ReferralCode::parse("ÄBCDE").is_err());
    }

    #[test]
    fn generated_codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = ReferralCode::generate();
            assert_eq!(code.as_str().len(), GENERATED_LEN);
            assert!(code.as_str().bytes().all(|b| ALPHABET.contains(&b)));
            assert_eq!(ReferralCode::parse(code.as_str()).ok(), Some(code));
        }
    }
}
