//! Requester allow-lists as Merkle trees, in OpenZeppelin's standard leaf format: the contract
//! checks a proof with `MerkleProof.verify` (sorted-pair hashing), so any tree built from
//! sorted pairs verifies; this one promotes an odd node to the next level unchanged.

use alloy::primitives::{Address, B256, keccak256};
use alloy::sol_types::SolValue;

/// `keccak256(bytes.concat(keccak256(abi.encode(account))))`: hashed twice so a leaf can never
/// be mistaken for an inner node.
pub fn requester_leaf(account: Address) -> B256 {
    keccak256(keccak256(account.abi_encode()))
}

fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// An allow-list of requesters.
#[derive(Clone, Debug)]
pub struct RequesterTree {
    levels: Vec<Vec<B256>>,
}

impl RequesterTree {
    /// Builds the tree; `None` for an empty list.
    pub fn new(accounts: &[Address]) -> Option<Self> {
        let mut leaves: Vec<B256> = accounts.iter().map(|a| requester_leaf(*a)).collect();
        if leaves.is_empty() {
            return None;
        }
        leaves.sort();
        leaves.dedup();
        let mut levels = vec![leaves];
        while levels.last().expect("non-empty").len() > 1 {
            let level = levels.last().expect("non-empty");
            let next = level
                .chunks(2)
                .map(|pair| if pair.len() == 2 { hash_pair(pair[0], pair[1]) } else { pair[0] })
                .collect();
            levels.push(next);
        }
        Some(Self { levels })
    }

    pub fn root(&self) -> B256 {
        self.levels.last().expect("non-empty")[0]
    }

    /// The proof that `account` is on the list, or `None` if it is not.
    pub fn proof(&self, account: Address) -> Option<Vec<B256>> {
        let leaf = requester_leaf(account);
        let mut index = self.levels[0].binary_search(&leaf).ok()?;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// What the contract computes: fold the proof into the leaf with sorted-pair hashing.
#[cfg(test)]
fn verify(root: B256, account: Address, proof: &[B256]) -> bool {
    proof.iter().fold(requester_leaf(account), |acc, p| hash_pair(acc, *p)) == root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_proves_and_strangers_do_not() {
        for n in 1..=9u8 {
            let accounts: Vec<Address> = (1..=n).map(Address::repeat_byte).collect();
            let tree = RequesterTree::new(&accounts).unwrap();
            for a in &accounts {
                let proof = tree.proof(*a).unwrap();
                assert!(verify(tree.root(), *a, &proof), "member {a} of {n}");
            }
            let stranger = Address::repeat_byte(0xee);
            assert!(tree.proof(stranger).is_none());
            assert!(!verify(tree.root(), stranger, &tree.proof(accounts[0]).unwrap()));
        }
    }
}
