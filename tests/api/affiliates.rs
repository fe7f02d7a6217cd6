//! The affiliate program: applying, the admin's decisions, the statement, cash commission and
//! withdrawals.
