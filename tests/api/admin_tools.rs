//! The admin's day-to-day tools: the referral list, rejecting a referral, adjusting a balance,
//! the program report.
