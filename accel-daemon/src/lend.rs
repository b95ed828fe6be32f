//! One owner for a handle that others read: the serve loop owns the
//! datapath and lends it to `/metrics`, which reads the maps at scrape time
//! but can neither keep, replace nor change it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The owner's side: the only one that can change, take or put the value.
/// Dropping it drops the value, however many [`Lent`]s remain.
pub struct Owner<T>(Arc<Mutex<Option<T>>>);

/// A borrower's side: read access while the owner has a value.
pub struct Lent<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Lent<T> {
    fn clone(&self) -> Self {
        Lent(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Lent<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<Option<T>>) -> MutexGuard<'_, Option<T>> {
    // A panic while reading or writing a handle leaves it as it was.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Owner<T> {
    pub fn new(value: Option<T>) -> Self {
        Owner(Arc::new(Mutex::new(value)))
    }

    /// Read access for someone else (the HTTP handlers).
    pub fn lend(&self) -> Lent<T> {
        Lent(self.0.clone())
    }

    /// Exclusive access: borrowers wait until the guard is dropped.
    pub fn get_mut(&mut self) -> MutexGuard<'_, Option<T>> {
        lock(&self.0)
    }

    pub fn take(&mut self) -> Option<T> {
        self.get_mut().take()
    }

    pub fn put(&mut self, value: T) {
        *self.get_mut() = Some(value);
    }
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl<T> Lent<T> {
    /// `f` of the value, or `None` while the owner has none.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        lock(&self.0).as_ref().map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowers_see_what_the_owner_has_and_no_longer() {
        let mut owner = Owner::new(Some(1));
        let lent = owner.lend();
        assert_eq!(lent.with(|v| *v), Some(1));
        if let Some(v) = owner.get_mut().as_mut() {
            *v = 2;
        }
        assert_eq!(lent.clone().with(|v| *v), Some(2));
        assert_eq!(owner.take(), Some(2));
        assert_eq!(lent.with(|v| *v), None);
        owner.put(3);
        assert_eq!(lent.with(|v| *v), Some(3));
        drop(owner);
        assert_eq!(lent.with(|v| *v), None, "the owner's drop ends the loan");
    }
}
