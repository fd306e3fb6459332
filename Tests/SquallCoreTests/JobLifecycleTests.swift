import Testing

@testable import SquallCore

@Suite("Job lifecycle in the Consumer")
struct JobLifecycleTests {
    let t0 = ContinuousClock.now

    /// A job driven to `state` through the ordinary path.
    func job(in state: JobLifecycle.State) -> JobLifecycle {
        var job = JobLifecycle()
        switch state {
        case .received:
            break
        case .running:
            _ = job.handle(.started(at: t0))
        case .transferring:
            _ = job.handle(.started(at: t0))
            _ = job.handle(.progress(bytesDone: 1, bytesTotal: 10, at: t0 + .seconds(1)))
        case .cancelling:
            _ = job.handle(.started(at: t0))
            _ = job.handle(.cancelRequested)
        case .abortingForShutdown:
            _ = job.handle(.started(at: t0))
            _ = job.handle(.shutdownGraceExpired)
        case .resultPendingConfirm(let outcome):
            _ = job.handle(.started(at: t0))
            _ = job.handle(.transferFinished(outcome, bytes: 10, at: t0 + .seconds(1)))
        default:
            Issue.record("no path to \(state) here")
        }
        #expect(job.state == state)
        return job
    }

    // MARK: the ordinary path

    @Test("starting publishes the starting packet")
    func start() {
        var job = JobLifecycle()
        let r1 = job.handle(.started(at: t0))
        #expect(r1 == [.publishProgress(.starting, bytesDone: 0, bytesTotal: nil)])
        #expect(job.state == .running)
    }

    @Test("progress moves a running job to transferring and is throttled")
    func progress() {
        var job = job(in: .running)
        let r2 = job.handle(.progress(bytesDone: 6, bytesTotal: 100, at: t0 + .seconds(1)))
        #expect(
            r2
                == [.publishProgress(.transferring, bytesDone: 6, bytesTotal: 100)])
        #expect(job.state == .transferring)
        let r3 = job.handle(.progress(bytesDone: 7, bytesTotal: 100, at: t0 + .milliseconds(1100)))
        #expect(r3 == [])
        #expect(job.state == .transferring)
    }

    @Test(
        "a finished transfer publishes its result and nothing else, and does not ack yet",
        arguments: [ResultPacket.Outcome.done, .skipped, .failed, .cancelled])
    func finished(outcome: ResultPacket.Outcome) {
        var job = job(in: outcome == .done ? .transferring : .running)
        let r5 = job.handle(.transferFinished(outcome, bytes: 0, at: t0))
        #expect(r5 == [.publishResult(outcome)])
        #expect(job.state == .resultPendingConfirm(outcome))
    }

    @Test(
        "the job is acked only after the result is confirmed",
        arguments: [ResultPacket.Outcome.done, .skipped, .failed])
    func ackAfterConfirm(outcome: ResultPacket.Outcome) {
        var job = job(in: .resultPendingConfirm(outcome))
        let r6 = job.handle(.resultConfirmed)
        #expect(r6 == [.ackJob])
        #expect(job.state == .acked(outcome))
        #expect(job.state.isFinal)
    }

    @Test("no event before the confirm acks the job (the ack deadline aside, tested below)")
    func nothingAcksEarly() {
        let events: [JobLifecycle.Event] = [
            .started(at: t0), .progress(bytesDone: 5, bytesTotal: 10, at: t0 + .seconds(3)),
            .transferFinished(.done, bytes: 10, at: t0 + .seconds(4)), .cancelRequested, .shutdownStarted,
        ]
        var job = JobLifecycle()
        for event in events {
            let r7 = job.handle(event)
            #expect(!r7.contains(.ackJob), "\(event) acked before the result was confirmed")
        }
    }

    @Test("a result that is not confirmed requeues the job for another attempt")
    func publishFailed() {
        var job = job(in: .resultPendingConfirm(.done))
        let r8 = job.handle(.resultPublishFailed)
        #expect(r8 == [.nackRequeueJob])
        #expect(job.state == .requeued)
    }

    // MARK: cancel

    @Test("a cancel before start publishes a cancelled result without transferring")
    func cancelBeforeStart() {
        var job = JobLifecycle()
        let r9 = job.handle(.cancelRequested)
        #expect(r9 == [.publishResult(.cancelled)])
        #expect(job.state == .resultPendingConfirm(.cancelled))
        let r10 = job.handle(.resultConfirmed)
        #expect(r10 == [.ackJob])
        #expect(job.state == .cancelled)
    }

    @Test("a cancel while transferring aborts the transfer, then reports it cancelled", arguments: [false, true])
    func cancelWhileRunning(bytesMoving: Bool) {
        var job = job(in: bytesMoving ? .transferring : .running)
        let r11 = job.handle(.cancelRequested)
        #expect(r11 == [.abortTransfer])
        #expect(job.state == .cancelling)
        let r12 = job.handle(.progress(bytesDone: 9, bytesTotal: 10, at: t0 + .seconds(9)))
        #expect(r12 == [])
        let r13 = job.handle(.cancelRequested)
        #expect(r13 == [])
        let r14 = job.handle(.transferFinished(.failed, bytes: 3, at: t0 + .seconds(9)))
        #expect(r14 == [.publishResult(.cancelled)])
        let r15 = job.handle(.resultConfirmed)
        #expect(r15 == [.ackJob])
        #expect(job.state == .cancelled)
    }

    @Test("a transfer that completed before the abort took effect is reported as done")
    func cancelTooLate() {
        var job = job(in: .cancelling)
        let r16 = job.handle(.transferFinished(.done, bytes: 10, at: t0))
        #expect(r16 == [.publishResult(.done)])
        #expect(job.state == .resultPendingConfirm(.done))
    }

    @Test("a cancel after the result was published changes nothing")
    func cancelAfterResult() {
        var job = job(in: .resultPendingConfirm(.done))
        let r17 = job.handle(.cancelRequested)
        #expect(r17 == [])
        #expect(job.state == .resultPendingConfirm(.done))
    }

    // MARK: shutdown

    @Test("on shutdown a job not yet started is requeued at once")
    func shutdownRequeuesUnstarted() {
        var job = JobLifecycle()
        let r18 = job.handle(.shutdownStarted)
        #expect(r18 == [.nackRequeueJob])
        #expect(job.state == .requeued)
    }

    @Test("within the grace period a started job carries on to its result")
    func shutdownLetsRunningFinish() {
        var job = job(in: .transferring)
        let r19 = job.handle(.shutdownStarted)
        #expect(r19 == [])
        #expect(job.state == .transferring)
        let r20 = job.handle(.transferFinished(.done, bytes: 10, at: t0 + .seconds(3)))
        #expect(r20.contains(.publishResult(.done)))
        let r21 = job.handle(.resultConfirmed)
        #expect(r21 == [.ackJob])
        #expect(job.state == .acked(.done))
    }

    @Test(
        "past the grace period a running transfer is aborted and the job requeued without a result",
        arguments: [false, true])
    func graceExpired(bytesMoving: Bool) {
        var job = job(in: bytesMoving ? .transferring : .running)
        _ = job.handle(.shutdownStarted)
        let r22 = job.handle(.shutdownGraceExpired)
        #expect(r22 == [.abortTransfer])
        #expect(job.state == .abortingForShutdown)
        let r23 = job.handle(.progress(bytesDone: 9, bytesTotal: 10, at: t0 + .seconds(30)))
        #expect(r23 == [])
        let r24 = job.handle(.cancelRequested)
        #expect(r24 == [])
        let r25 = job.handle(.transferFinished(.cancelled, bytes: 3, at: t0 + .seconds(30)))
        #expect(r25 == [.nackRequeueJob])
        #expect(job.state == .requeued)
    }

    @Test("past the grace period an unstarted job is requeued and a cancelling one aborted")
    func graceExpiredOtherStates() {
        var unstarted = JobLifecycle()
        let r26 = unstarted.handle(.shutdownGraceExpired)
        #expect(r26 == [.nackRequeueJob])
        var cancelling = job(in: .cancelling)
        let r27 = cancelling.handle(.shutdownGraceExpired)
        #expect(r27 == [.abortTransfer])
        #expect(cancelling.state == .abortingForShutdown)
    }

    @Test("past the grace period a job awaiting its confirm keeps waiting for it")
    func graceExpiredAwaitingConfirm() {
        var job = job(in: .resultPendingConfirm(.failed))
        let r28 = job.handle(.shutdownGraceExpired)
        #expect(r28 == [])
        let r29 = job.handle(.resultConfirmed)
        #expect(r29 == [.ackJob])
        #expect(job.state == .acked(.failed))
    }

    // MARK: transfers longer than the broker's consumer_timeout

    @Test("at the ack deadline a running job is acked once and keeps running, its lease owning it")
    func handOverAtDeadline() {
        var job = job(in: .transferring)
        let r1 = job.handle(.ackDeadlineReached)
        #expect(r1 == [.ackJob])
        #expect(job.state == .transferring)
        #expect(job.handedOverToLease)
        let r2 = job.handle(.ackDeadlineReached)
        #expect(r2 == [])
        let r3 = job.handle(.transferFinished(.done, bytes: 10, at: t0 + .seconds(90)))
        #expect(r3.last == .publishResult(.done))
        let r4 = job.handle(.resultConfirmed)
        #expect(r4 == [], "a message is never acked twice")
        #expect(job.state == .acked(.done))
    }

    @Test("a job handed over whose result is not confirmed is left to its lease, not nacked")
    func handedOverResultFails() {
        var job = job(in: .running)
        _ = job.handle(.ackDeadlineReached)
        _ = job.handle(.transferFinished(.failed, bytes: 0, at: t0))
        let r1 = job.handle(.resultPublishFailed)
        #expect(r1 == [])
        #expect(job.state == .releasedToLease)
        #expect(job.state.isFinal)
    }

    @Test("a job handed over and aborted at shutdown is left to its lease")
    func handedOverShutdown() {
        var job = job(in: .transferring)
        _ = job.handle(.ackDeadlineReached)
        let r1 = job.handle(.shutdownGraceExpired)
        #expect(r1 == [.abortTransfer])
        let r2 = job.handle(.transferFinished(.cancelled, bytes: 3, at: t0))
        #expect(r2 == [])
        #expect(job.state == .releasedToLease)
    }

    @Test("a job handed over can still be cancelled, reporting its result without a second ack")
    func handedOverCancel() {
        var job = job(in: .transferring)
        _ = job.handle(.ackDeadlineReached)
        let r1 = job.handle(.cancelRequested)
        #expect(r1 == [.abortTransfer])
        let r2 = job.handle(.transferFinished(.failed, bytes: 3, at: t0))
        #expect(r2 == [.publishResult(.cancelled)])
        let r3 = job.handle(.resultConfirmed)
        #expect(r3 == [])
        #expect(job.state == .cancelled)
    }

    @Test("a job still waiting for a slot at the ack deadline is requeued for another Consumer")
    func deadlineBeforeStart() {
        var job = JobLifecycle()
        let r1 = job.handle(.ackDeadlineReached)
        #expect(r1 == [.nackRequeueJob])
        #expect(job.state == .requeued)
    }

    @Test("a job awaiting its result's confirm at the deadline is acked, and not again after")
    func deadlineAwaitingConfirm() {
        var job = job(in: .resultPendingConfirm(.done))
        let r1 = job.handle(.ackDeadlineReached)
        #expect(r1 == [.ackJob])
        let r2 = job.handle(.resultConfirmed)
        #expect(r2 == [])
        #expect(job.state == .acked(.done))
    }

    @Test("a job being aborted for shutdown at the deadline is simply requeued when the abort returns")
    func deadlineWhileAborting() {
        var job = job(in: .abortingForShutdown)
        let r1 = job.handle(.ackDeadlineReached)
        #expect(r1 == [])
        let r2 = job.handle(.transferFinished(.cancelled, bytes: 0, at: t0))
        #expect(r2 == [.nackRequeueJob])
        #expect(job.state == .requeued)
    }

    // MARK: what cannot happen changes nothing

    @Test("events that do not apply leave a job as it is")
    func irrelevantEvents() {
        var received = JobLifecycle()
        let r30 = received.handle(.resultConfirmed)
        #expect(r30 == [])
        let r31 = received.handle(.progress(bytesDone: 1, bytesTotal: nil, at: t0))
        #expect(r31 == [])
        let r32 = received.handle(.transferFinished(.done, bytes: 1, at: t0))
        #expect(r32 == [])
        #expect(received.state == .received)

        var running = job(in: .running)
        let r33 = running.handle(.started(at: t0))
        #expect(r33 == [])
        let r34 = running.handle(.resultConfirmed)
        #expect(r34 == [])
        #expect(running.state == .running)
    }

    @Test("a final job ignores every event", arguments: [0, 1, 2])
    func finalIsFinal(which: Int) {
        var job = job(in: .resultPendingConfirm(which == 2 ? .cancelled : .done))
        _ = job.handle(which == 1 ? .resultPublishFailed : .resultConfirmed)
        let final = job.state
        #expect(final.isFinal)
        let events: [JobLifecycle.Event] = [
            .started(at: t0), .progress(bytesDone: 1, bytesTotal: 2, at: t0 + .seconds(5)),
            .transferFinished(.done, bytes: 1, at: t0), .resultConfirmed, .resultPublishFailed, .cancelRequested,
            .shutdownStarted, .shutdownGraceExpired, .ackDeadlineReached,
        ]
        for event in events {
            let r35 = job.handle(event)
            #expect(r35 == [])
            #expect(job.state == final)
        }
    }
}
