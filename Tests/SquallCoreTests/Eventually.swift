/// Waits until `condition` holds, polling, or `timeout` passes; returns whether it held.
///
/// Timing tests assert on events, not on fixed sleeps: the pool they run on is shared with other
/// suites on a 2-core machine, so a fixed 100 ms sleep may see nothing happen yet.
func eventually(timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}
