//! The offers this session is receiving or verifying right now, so that the same
//! offer arriving again (on a new connection, after the old one was lost or
//! replaced) waits for the earlier copy to end instead of racing it. Only then is it
//! clear whether that copy was stored (answer "already have it") or kept as a part
//! (resume it). Offers are told apart by name and size alone: an offer whose
//! SHA-256 follows its data may be the same file as one whose hash is known.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::parts::Meta;

/// An offer's name and size.
type Key = (String, u64);

/// Offers in progress, each with a channel that closes when its transfer ends.
#[derive(Debug, Default, Clone)]
pub struct InProgress {
    offers: Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>,
}

/// Held while one transfer of an offer runs; dropping it lets the next one start.
#[derive(Debug)]
pub struct Claim {
    offers: Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>,
    key: Key,
    _ended: watch::Sender<()>,
}

impl InProgress {
    /// Claims `meta`, first waiting for any transfer of this session that holds it
    /// to end. The holder never waits for anything a waiter holds.
    pub async fn claim(&self, meta: &Meta) -> Claim {
        loop {
            let mut ended = match self.try_claim(meta) {
                Ok(claim) => return claim,
                Err(ended) => ended,
            };
            // Fails once the holder's sender is gone, which is all we wait for.
            while ended.changed().await.is_ok() {}
        }
    }

    /// Claims `meta` if no transfer holds it; otherwise a receiver that closes
    /// when the one that does ends.
    pub fn try_claim(&self, meta: &Meta) -> Result<Claim, watch::Receiver<()>> {
        let key = (meta.name.clone(), meta.size);
        let mut offers = self.offers.lock().expect("offers in progress poisoned");
        if let Some(ended) = offers.get(&key) {
            return Err(ended.clone());
        }
        let (ended, watching) = watch::channel(());
        offers.insert(key.clone(), watching);
        Ok(Claim {
            offers: self.offers.clone(),
            key,
            _ended: ended,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut offers = self.offers.lock().expect("offers in progress poisoned");
        offers.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn meta(tag: u8) -> Meta {
        Meta {
            name: "a".into(),
            size: 1,
            sha256: Some([tag; 32]),
            sender: None,
        }
    }

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_to_end() {
        let offers = InProgress::default();
        let first = offers.claim(&meta(1)).await;
        assert!(offers.try_claim(&meta(1)).is_err());
        assert!(
            offers
                .try_claim(&Meta {
                    sha256: None,
                    ..meta(1)
                })
                .is_err(),
            "an offer whose hash follows may be the same file"
        );
        let other_size = Meta { size: 2, ..meta(1) };
        let _other = offers
            .try_claim(&other_size)
            .expect("another offer is free");
        let second = tokio::spawn({
            let offers = offers.clone();
            async move { offers.claim(&meta(1)).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "claimed while the first still held it"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second claim follows the first")
            .unwrap();
        drop(second);
        assert!(offers.try_claim(&meta(1)).is_ok());
    }
}
