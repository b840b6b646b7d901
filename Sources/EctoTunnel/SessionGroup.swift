import Synchronization

/// The SSH sessions of one tunnel configuration (`sessions = N`), each run by its own driver
/// thread ("lane"). Lane 0, the primary, owns the listener: it accepts every client and hands it
/// to the least busy lane that is up (itself on a tie, so a lone client never pays for a hop).
/// The other lanes connect only while the primary is up: while the server is away only one
/// session polls it, and a host key or authentication problem is met by one session, not N.
///
/// Lanes report their load here after each loop pass that changed it; the primary's choice reads
/// it under one lock per accepted client.
final class SessionGroup: Sendable {
    struct Lane: Equatable, Sendable {
        var up = false
        /// Open and waiting connections, as last reported (plus clients assigned since).
        var connections = 0
    }

    let count: Int
    private let lanes: Mutex<[Lane]>
    private let handles = Mutex<[TunnelHandle]>([])

    init(count: Int) {
        precondition(count >= 1)
        self.count = count
        self.lanes = Mutex(Array(repeating: Lane(), count: count))
    }

    /// Called once, right after every lane's driver has started.
    func attach(_ handles: [TunnelHandle]) {
        precondition(handles.count == count)
        self.handles.withLock { $0 = handles }
    }

    /// The handle of `lane`, nil until `attach`.
    func handle(_ lane: Int) -> TunnelHandle? {
        handles.withLock { $0.indices.contains(lane) ? $0[lane] : nil }
    }

    /// A lane's own view of itself. Returns true when this report takes `lane` from down to up.
    @discardableResult
    func report(lane: Int, up: Bool, connections: Int) -> Bool {
        lanes.withLock { lanes in
            let wasUp = lanes[lane].up
            lanes[lane] = Lane(up: up, connections: connections)
            return up && !wasUp
        }
    }

    var primaryUp: Bool { lanes.withLock { $0[0].up } }

    /// Clients of every session, as last reported (for `max_clients`).
    var totalConnections: Int { lanes.withLock { $0.reduce(0) { $0 + $1.connections } } }

    /// Picks the lane for one new client and counts it there, so that a burst of accepts spreads
    /// before the lanes report again. Nil when no lane is up.
    func assign(preferring preferred: Int) -> Int? {
        lanes.withLock { lanes in
            guard let lane = Self.pick(lanes, preferring: preferred) else { return nil }
            lanes[lane].connections += 1
            return lane
        }
    }

    /// The least busy lane that is up; `preferred` wins ties, then the lowest index.
    static func pick(_ lanes: [Lane], preferring preferred: Int) -> Int? {
        var best: Int?
        for (index, lane) in lanes.enumerated() where lane.up {
            guard let current = best else {
                best = index
                continue
            }
            let load = lane.connections
            let bestLoad = lanes[current].connections
            if load < bestLoad || (load == bestLoad && index == preferred) { best = index }
        }
        return best
    }

    /// Tells the other lanes that the primary is up (they connect now, or end their backoff).
    func primaryCameUp() {
        for lane in 1..<count { handle(lane)?.send(.primaryUp) }
    }
}
