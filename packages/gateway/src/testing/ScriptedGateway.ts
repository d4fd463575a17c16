/**
 * The server side of the in-memory transport, scripted: it plays Discord for every
 * connection the client opens (Hello, READY on Identify, replay then RESUMED on Resume,
 * ACKs) and lets a test inject faults at exact `TestClock` instants. Sessions and their
 * replay buffers outlive connections, as on Discord.
 */

import { Clock, Context, Effect, Layer, type Scope } from "effect"
import type * as Transport from "../Transport.ts"
import { type MemoryPeer, MemoryTransport } from "./MemoryTransport.ts"
import * as Payloads from "./Payloads.ts"

export interface ScriptedGatewayOptions {
  /** Hello's heartbeat interval. Default 41 250 ms. */
  readonly heartbeatInterval?: number
  /** A resume replays this many already-acknowledged events too (an at-least-once server). */
  readonly replayOverlap?: number
}

interface Session {
  readonly id: string
  readonly shard: readonly [number, number]
  seq: number
  readonly buffer: Array<Payloads.DispatchPayload>
  expired: boolean
}

/** How every connection of a shard ends right after READY or RESUMED (a hostile server). */
export type HandshakeEnding = { readonly close: number } | "reconnect" | "malformed"

interface ShardLink {
  peer: MemoryPeer | undefined
  session: Session | undefined
  acking: boolean
  rejectResumesWith: number | undefined
  endAfterHandshake: HandshakeEnding | undefined
  ignoreHandshakes: boolean
  rateLimitMembersFor: number | undefined
}

export interface ScriptedGatewayService {
  /** Dispatches an event on the shard's session (buffered for replay); returns its sequence. */
  readonly emit: (type: string, data: unknown, shardId?: number) => Effect.Effect<number>
  /** Dispatches `count` MESSAGE_CREATE events numbered from `from`. */
  readonly emitMessages: (count: number, shardId?: number, from?: number) => Effect.Effect<void>
  readonly stopAcks: (shardId?: number) => Effect.Effect<void>
  readonly resumeAcks: (shardId?: number) => Effect.Effect<void>
  readonly requestHeartbeat: (shardId?: number) => Effect.Effect<void>
  readonly reconnect: (shardId?: number) => Effect.Effect<void>
  readonly invalidSession: (resumable: boolean, shardId?: number) => Effect.Effect<void>
  readonly close: (code: number, shardId?: number) => Effect.Effect<void>
  readonly drop: (shardId?: number) => Effect.Effect<void>
  /** Closes every Resume attempt with `code` before RESUMED (undefined: accept again). */
  readonly rejectResumes: (code: number | undefined, shardId?: number) => Effect.Effect<void>
  /** From now on every connection of the shard ends right after READY/RESUMED (undefined: no more). */
  readonly endAfterHandshake: (ending: HandshakeEnding | undefined, shardId?: number) => Effect.Effect<void>
  /** Identify and Resume for the shard go unanswered (heartbeats are still ACKed), or are answered again. */
  readonly ignoreHandshakes: (on: boolean, shardId?: number) => Effect.Effect<void>
  /**
   * Answers every Request Guild Members (op 8) with a RATE_LIMITED dispatch carrying its
   * guild and nonce and this `retry_after` (seconds), as Discord does (undefined: stop).
   */
  readonly rateLimitMemberRequests: (
    retryAfterSeconds: number | undefined,
    shardId?: number,
  ) => Effect.Effect<void>
  /** Hello on later connections announces this interval (a hostile server's 1 ms, or back to normal). */
  readonly setHeartbeatInterval: (millis: number) => Effect.Effect<void>
  /** Sends `count` op 1 (heartbeat request) or op 7 (reconnect) payloads back to back. */
  readonly flood: (op: 1 | 7, count: number, shardId?: number) => Effect.Effect<void>
  /** The session can no longer be resumed (a Resume gets Invalid Session false). */
  readonly expireSession: (shardId?: number) => Effect.Effect<void>
  /** The connection currently attached to the shard's session. */
  readonly peer: (shardId?: number) => MemoryPeer | undefined
  /** Clock times of every Identify, per shard. */
  readonly identifies: (shardId?: number) => ReadonlyArray<number>
  readonly allIdentifies: () => ReadonlyArray<{ readonly shard: number; readonly at: number }>
  readonly resumes: (shardId?: number) => number
  /** Commands (op, d) the client sent, other than heartbeats and handshakes. */
  readonly commands: (
    shardId?: number,
  ) => ReadonlyArray<{ readonly op: number; readonly d: unknown; readonly at: number }>
  /** Every event ever dispatched on the shard's sessions, in order: what the consumer must see. */
  readonly produced: (shardId?: number) => ReadonlyArray<Payloads.DispatchPayload>
}

export class ScriptedGateway extends Context.Service<ScriptedGateway, ScriptedGatewayService>()(
  "@vigil/gateway/testing/ScriptedGateway",
) {
  /** Plays the server over `MemoryTransport` (which this layer also provides). */
  static readonly layer = (
    options: ScriptedGatewayOptions = {},
  ): Layer.Layer<ScriptedGateway | MemoryTransport | Transport.GatewayTransport> =>
    Layer.effect(ScriptedGateway)(make(options)).pipe(Layer.provideMerge(MemoryTransport.layer))
}

const make = (
  options: ScriptedGatewayOptions,
): Effect.Effect<ScriptedGatewayService, never, MemoryTransport | Scope.Scope> =>
  Effect.gen(function* () {
    const gateway = yield* MemoryTransport
    let interval = options.heartbeatInterval ?? 41_250
    const links = new Map<number, ShardLink>()
    const sessions = new Map<string, Session>()
    const identifyLog: Array<{ shard: number; at: number }> = []
    const resumeCounts = new Map<number, number>()
    const commandLog = new Map<number, Array<{ op: number; d: unknown; at: number }>>()
    const producedLog = new Map<number, Array<Payloads.DispatchPayload>>()
    let sessionCounter = 0

    const link = (shardId: number): ShardLink => {
      let l = links.get(shardId)
      if (!l) {
        l = {
          peer: undefined,
          session: undefined,
          acking: true,
          rejectResumesWith: undefined,
          endAfterHandshake: undefined,
          ignoreHandshakes: false,
          rateLimitMembersFor: undefined,
        }
        links.set(shardId, l)
      }
      return l
    }
    const listOf = <A>(map: Map<number, Array<A>>, shardId: number): Array<A> => {
      let list = map.get(shardId)
      if (!list) {
        list = []
        map.set(shardId, list)
      }
      return list
    }

    const dispatchOn = (session: Session, type: string, data: unknown) =>
      Effect.gen(function* () {
        const event = Payloads.dispatch(++session.seq, type, data)
        session.buffer.push(event)
        listOf(producedLog, session.shard[0]).push(event)
        const l = link(session.shard[0])
        if (l.session === session && l.peer?.isOpen()) yield* l.peer.send(event)
        return event.s
      })

    /**
     * Ends the connection the hostile way, if the shard is set to. The script goes on reading
     * after a close: frames the client wrote before it still arrive, as they would over TCP.
     */
    const endIfHostile = (peer: MemoryPeer, l: ShardLink): Effect.Effect<void> => {
      const ending = l.endAfterHandshake
      if (ending === undefined) return Effect.void
      return ending === "reconnect"
        ? peer.send(Payloads.reconnect)
        : ending === "malformed"
          ? peer.sendRaw("{malformed")
          : ending.close === 1006
            ? peer.drop
            : peer.close(ending.close, "ended after the handshake")
    }

    const serve = (peer: MemoryPeer): Effect.Effect<void> =>
      Effect.gen(function* () {
        yield* peer.send(Payloads.hello(interval))
        let shardId: number | undefined
        while (true) {
          const frame = yield* peer.nextFrame
          const message = JSON.parse(frame.text) as { op: number; d: any }
          const now = yield* Clock.currentTimeMillis
          switch (message.op) {
            case 1: {
              const l = shardId === undefined ? undefined : link(shardId)
              if (l === undefined || l.acking) yield* peer.send(Payloads.ack)
              break
            }
            case 2: {
              const shard = (message.d.shard ?? [0, 1]) as [number, number]
              shardId = shard[0]
              identifyLog.push({ shard: shardId, at: now })
              if (link(shardId).ignoreHandshakes) break
              const session: Session = {
                id: `session-${shardId}-${++sessionCounter}`,
                shard,
                seq: 0,
                buffer: [],
                expired: false,
              }
              sessions.set(session.id, session)
              const l = link(shardId)
              l.peer = peer
              l.session = session
              yield* dispatchOn(session, "READY", Payloads.readyData(session.id, shard))
              yield* endIfHostile(peer, l)
              break
            }
            case 6: {
              const session = sessions.get(message.d.session_id)
              if (!session || session.expired) {
                yield* peer.send(Payloads.invalidSession(false))
                break
              }
              const seq = (message.d.seq ?? 0) as number
              if (seq > session.seq) {
                yield* peer.close(4007, "invalid seq")
                return
              }
              shardId = session.shard[0]
              if (link(shardId).ignoreHandshakes) break
              const rejectWith = link(shardId).rejectResumesWith
              if (rejectWith !== undefined) {
                yield* peer.close(rejectWith, "resume rejected")
                return
              }
              resumeCounts.set(shardId, (resumeCounts.get(shardId) ?? 0) + 1)
              const l = link(shardId)
              l.peer = peer
              l.session = session
              const from = Math.max(0, seq - (options.replayOverlap ?? 0))
              for (const event of session.buffer) if (event.s > from) yield* peer.send(event)
              yield* dispatchOn(session, "RESUMED", null)
              yield* endIfHostile(peer, l)
              break
            }
            default: {
              listOf(commandLog, shardId ?? -1).push({ op: message.op, d: message.d, at: now })
              const l = shardId === undefined ? undefined : link(shardId)
              if (message.op === 8 && l?.session && l.rateLimitMembersFor !== undefined) {
                yield* dispatchOn(l.session, "RATE_LIMITED", {
                  opcode: 8,
                  retry_after: l.rateLimitMembersFor,
                  meta: { guild_id: message.d.guild_id, nonce: message.d.nonce },
                })
              }
            }
          }
        }
      }).pipe(Effect.ignore)

    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(gateway.accept, (peer) => Effect.forkScoped(serve(peer)))),
    )

    const onPeer = (shardId: number, f: (peer: MemoryPeer) => Effect.Effect<void>) =>
      Effect.suspend(() => {
        const peer = link(shardId).peer
        return peer?.isOpen() ? f(peer) : Effect.void
      })

    return {
      emit: (type, data, shardId = 0) =>
        Effect.suspend(() => {
          const session = link(shardId).session
          return session ? dispatchOn(session, type, data) : Effect.succeed(-1)
        }),
      emitMessages: (count, shardId = 0, from = 1) =>
        Effect.suspend(() => {
          const session = link(shardId).session
          if (!session) return Effect.void
          return Effect.forEach(
            Array.from({ length: count }, (_, i) => from + i),
            (n) => dispatchOn(session, "MESSAGE_CREATE", { id: String(n), content: `message ${n}` }),
            { discard: true },
          )
        }),
      stopAcks: (shardId = 0) =>
        Effect.sync(() => {
          link(shardId).acking = false
        }),
      resumeAcks: (shardId = 0) =>
        Effect.sync(() => {
          link(shardId).acking = true
        }),
      requestHeartbeat: (shardId = 0) => onPeer(shardId, (p) => p.send({ op: 1, d: null, s: null, t: null })),
      reconnect: (shardId = 0) => onPeer(shardId, (p) => p.send({ op: 7, d: null, s: null, t: null })),
      invalidSession: (resumable, shardId = 0) =>
        Effect.suspend(() => {
          const l = link(shardId)
          if (!resumable && l.session) l.session.expired = true
          return onPeer(shardId, (p) => p.send(Payloads.invalidSession(resumable)))
        }),
      close: (code, shardId = 0) => onPeer(shardId, (p) => p.close(code)),
      drop: (shardId = 0) => onPeer(shardId, (p) => p.drop),
      rejectResumes: (code, shardId = 0) =>
        Effect.sync(() => {
          link(shardId).rejectResumesWith = code
        }),
      endAfterHandshake: (ending, shardId = 0) =>
        Effect.sync(() => {
          link(shardId).endAfterHandshake = ending
        }),
      ignoreHandshakes: (on, shardId = 0) =>
        Effect.sync(() => {
          link(shardId).ignoreHandshakes = on
        }),
      rateLimitMemberRequests: (retryAfterSeconds, shardId = 0) =>
        Effect.sync(() => {
          link(shardId).rateLimitMembersFor = retryAfterSeconds
        }),
      setHeartbeatInterval: (millis) =>
        Effect.sync(() => {
          interval = millis
        }),
      flood: (op, count, shardId = 0) =>
        onPeer(shardId, (p) =>
          Effect.forEach(
            Array.from({ length: count }),
            () => p.send(op === 1 ? Payloads.heartbeatRequest : Payloads.reconnect),
            { discard: true },
          ),
        ),
      expireSession: (shardId = 0) =>
        Effect.sync(() => {
          const session = link(shardId).session
          if (session) session.expired = true
        }),
      peer: (shardId = 0) => link(shardId).peer,
      identifies: (shardId = 0) => identifyLog.filter((i) => i.shard === shardId).map((i) => i.at),
      allIdentifies: () => identifyLog,
      resumes: (shardId = 0) => resumeCounts.get(shardId) ?? 0,
      commands: (shardId = 0) => listOf(commandLog, shardId),
      produced: (shardId = 0) => listOf(producedLog, shardId),
    }
  })
