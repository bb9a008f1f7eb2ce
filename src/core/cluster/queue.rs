//! Queues: their share and allocation, and creating, changing and removing them.

use super::{Cluster, CoreError, GangId, QueueId, Resources};

#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub weight: u64,
    /// Hard cap; `Resources::UNLIMITED` in uncapped slots.
    pub capability: Resources,
    /// Reserved for this queue, never lent.
    pub guarantee: Resources,
    /// Whether capacity this queue borrows above its deserved share may be reclaimed.
    pub reclaimable: bool,
    /// Closed queues admit nothing new.
    pub open: bool,
    pub parent: Option<String>,
}

impl QueueSpec {
    pub fn new(name: &str, weight: u64) -> QueueSpec {
        QueueSpec {
            name: name.to_string(),
            weight,
            capability: Resources::UNLIMITED,
            guarantee: Resources::ZERO,
            reclaimable: true,
            open: true,
            parent: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub spec: QueueSpec,
    /// Requests of bound members plus reservations (slots and elastic claims) of this queue's gangs.
    pub allocated: Resources,
    /// Deserved share computed by the last admission cycle.
    pub deserved: Resources,
    /// allocated + pending demand, as of the last admission cycle.
    pub request: Resources,
    /// Bit `s` set when, at the start of the last admission cycle, allocation exceeded the deserved share in
    /// resource slot `s` (what the queue borrows, and what reclaim may take back).
    pub borrowing: u16,
    pub gangs: Vec<GangId>,
}

impl Cluster {
    pub fn upsert_queue(&mut self, spec: QueueSpec) -> QueueId {
        if let Some(&id) = self.queue_by_name.get(&spec.name) {
            let q = self.queue_mut(id);
            if q.spec != spec {
                q.spec = spec;
                self.capacity_grew(); // a raised capability or an opened queue can admit more
            }
            return id;
        }
        let name = spec.name.clone();
        let id = QueueId(self.queues.insert(Queue {
            spec,
            allocated: Resources::ZERO,
            deserved: Resources::ZERO,
            request: Resources::ZERO,
            borrowing: 0,
            gangs: Vec::new(),
        }));
        self.queue_by_name.insert(name, id);
        self.dirty = true;
        id
    }

    pub fn remove_queue(&mut self, id: QueueId) -> Result<(), CoreError> {
        let q = self.queues.get(id.0).ok_or(CoreError::Unknown { kind: "queue", id: id.0 })?;
        if !q.gangs.is_empty() {
            return Err(CoreError::QueueInUse { queue: q.spec.name.clone(), gangs: q.gangs.len() });
        }
        let q = self.queues.remove(id.0).expect("checked");
        self.queue_by_name.remove(&q.spec.name);
        self.dirty = true;
        Ok(())
    }
}
