//! Keyset pagination: newest first, by id. The cursor is the last id seen, so a page costs one
//! indexed range scan however deep it is.

use crate::error::AppError;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

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
        Page {
            items: rows,
            has_next,
            total,
        }
    }
}

/// One page of `base`, newest first by `id`, with the total count of `base`. A first page that
/// is not full holds every row, so its length is the total and the count query is skipped:
/// the common case of an account with a few friends or entries costs one statement, not two.
pub async fn fetch<E, C>(db: &C, base: Select<E>, id: E::Column, request: PageRequest) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    C: ConnectionTrait,
{
    let mut query = base.clone().order_by_desc(id).limit(request.fetch_limit());
    if let Some(after) = request.after {
        query = query.filter(id.lt(after));
    }
    let rows = query.all(db).await?;
    let total = match known_total(rows.len(), request) {
        Some(total) => total,
        None => base.count(db).await?,
    };
    Ok(Page::from_rows(rows, request, total))
}

/// The total a page's rows tell by themselves: all of them, when the page starts at the
/// beginning and came back short of `first + 1`.
fn known_total(fetched: usize, request: PageRequest) -> Option<u64> {
    (request.after.is_none() && (fetched as u64) < request.fetch_limit()).then_some(fetched as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_page_sizes() {
        assert_eq!(PageRequest::new(None, None).map(|p| p.first).ok(), Some(20));
        assert!(PageRequest::new(Some(101), None).is_err());
        assert!(PageRequest::new(Some(-1), None).is_err());
        let request = PageRequest::new(Some(2), None)
            .ok()
            .unwrap_or(PageRequest { first: 2, after: None });
        let page = Page::from_rows(vec![3, 2, 1], request, 3);
        assert_eq!((page.items, page.has_next), (vec![3, 2], true));
    }

    #[test]
    fn only_a_short_first_page_knows_its_total() {
        let first_page = PageRequest { first: 20, after: None };
        assert_eq!(known_total(0, first_page), Some(0));
        assert_eq!(known_total(20, first_page), Some(20));
        // 21 rows fetched: there are more than this page shows.
        assert_eq!(known_total(21, first_page), None);
        // A later page does not see the rows before it.
        assert_eq!(
            known_total(
                3,
                PageRequest {
                    first: 20,
                    after: Some(9)
                }
            ),
            None
        );
    }
}
