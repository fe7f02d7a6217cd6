//! Keyset pagination: newest first, by id. The cursor is the last id seen, so a page costs one
//! indexed range scan however deep it is.

use crate::error::AppError;

pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub first: u64,
    /// Items strictly older (smaller id) than this one.
    pub after: Option<i64>,
}

impl PageRequest {
    pub fn new(first: Option<i32>, after: Option<i64>) -> Result<Self, AppError> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if n < 0 => return Err(AppError::bad_input("first must not be negative")),
            Some(n) if n as u64 > MAX_PAGE => {
                return Err(AppError::bad_input(format!("first must be at most {MAX_PAGE}")));
            }
            Some(n) => n as u64,
        };
        Ok(PageRequest { first, after })
    }

    /// One more row than asked for tells whether there is a next page.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }
}

#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
    pub total: u64,
}

impl<T> Page<T> {
    /// Builds a page from up to `first + 1` rows fetched in order.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, total: u64) -> Self {
        let has_next = rows.len() as u64 > request.first;
        rows.truncate(request.first as usize);
        Page { items: rows, has_next, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_page_sizes() {
        assert_eq!(PageRequest::new(None, None).map(|p| p.first).ok(), Some(20));
        assert!(PageRequest::new(Some(101), None).is_err());
        assert!(PageRequest::new(Some(-1), None).is_err());
        let request = PageRequest::new(Some(2), None).ok().unwrap_or(PageRequest { first: 2, after: None });
        let page = Page::from_rows(vec![3, 2, 1], request, 3);
        assert_eq!((page.items, page.has_next), (vec![3, 2], true));
    }
}
