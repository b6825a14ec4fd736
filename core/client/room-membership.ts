/**
 * Who is in a room call, as we see it: the relay's roster, admission of members from their
 * signed and proven announcements, our keyring and the pacing of our sender-key rotations,
 * and what is kept about members that left or were refused. No network here: it is fed the
 * join answer and the relay's pushes, and sends room signals through `send`, so it can be
 * driven by announcement objects in a test.
 *
 * - Admission: the room name gives the room id the relay sees and the admission key
 *   (core/crypto/room-name.ts). A member is admitted from its announcement when the keyring
 *   accepts it (signed by its identity, proven with the admission key, on the allow list if
 *   there is one), it names the identity the member joined with (the relay's roster), and its
 *   session is not already another slot's (a replay). Each admitted member has a trust:
 *   `allowed`, `known` (met before: MemberDirectory), or `new`.
 * - Refusal: a refused announcement is recorded once per member and reason (the first
 *   MAX_REFUSED_REPORTED), said once, and the media from its relay slot is dropped and counted.
 * - Rotation: on membership changes our sender key rotates, wrapped for every current
 *   member, at most once per ROTATION_INTERVAL_MS: the first change after a quiet interval
 *   rotates at once, later ones are taken together at the interval's end.
 * - Bounds: departed members listed (MAX_DEPARTED_REPORTED, silent ones give way to heard
 *   ones), refused members and slots, look-alike alias warnings, wrapped keys waiting for
 *   their sender's announcement, pushes before the join answer, the roster, our own past
 *   sessions: join/leave churn and a hostile relay or member cannot grow any of them.
 */
import { DecodeError, ProtocolError, errorMessage } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import type { Meeting } from '../crypto/known-members.js';
import type { MediaDecryptor, MediaEncryptor } from '../crypto/media-crypto.js';
import { deriveRoomKeys } from '../crypto/room-name.js';
import { KeyExchangeError, MAX_ALIAS_CODE_POINTS, parseMemberAnnouncement, RoomKeyring, type MemberAnnouncement, type SeededKeys, type WrappedKeyMessage } from '../crypto/sender-keys.js';
import { MAX_ROOM_PARTICIPANTS } from '../relay/rooms.js';
import type { KnownSignal } from '../transport/signal-stream.js';
import type { MemberAnnouncementEntry, RoomParticipant } from '../wire/signal.js';
import { systemClock, type Clock } from './clock.js';

/**
 * Our sender key rotates for members at most once per this interval. The first membership change after a
 * quiet interval rotates at once (a newcomer's first audio waits for nothing more); changes
 * within the interval are taken together at its end. Only keys wrapped for members count: the
 * first member to join us in a room we were alone in gets its key at once (in a 1:1 call the
 * caller joins just after the callee). So this is also the bound on how long a
 * member that left can still read what we send (docs/e2e-encryption.md), and a member joining
 * and leaving 50 times a second costs 4 rotations a second instead of 100 (8 if it is our only
 * company: every other one is a key for nobody, which costs no messages).
 */
export const ROTATION_INTERVAL_MS = 250;
/** Members who left kept in the report; the rest are counted (participantsNotListed). */
export const MAX_DEPARTED_REPORTED = 64;
/** Refused members listed in the report; the rest are counted (refusedNotListed). */
export const MAX_REFUSED_REPORTED = 64;
/** Pairs of look-alike aliases warned about (one warning each). */
const MAX_ALIAS_WARNINGS = 64;
/** Relay slots remembered as refused (to count the media they send, which is dropped). */
const MAX_REFUSED_SLOTS = 256;
/** Room updates kept while our join answer is on its way; more are dropped. */
export const MAX_EARLY_ROSTERS = 256;
/** Roster entries kept (the relay's word on who joined as whom); the oldest give way. */
export const MAX_ROSTER = 4 * MAX_ROOM_PARTICIPANTS;
/** Our own earlier room sessions (one per re-join after a lost relay) ignored when announced. */
const MAX_OWN_PAST_SESSIONS = 64;

/**
 * How far we trust an admitted member's identity: `allowed` (on the allow list), `known` (met
 * in an earlier call: pinned, trust on first use; our own identity too), `new` (first meeting,
 * pinned now). Every admitted member proved it knows the room's name.
 */
export type MemberTrust = 'allowed' | 'known' | 'new';

/** The store of members met before (core/crypto/known-members.ts KnownMembers). */
export interface MemberDirectory {
  meet(fingerprint: string, alias: string): Meeting;
}

/** Why an announcement was refused: a KeyExchangeError reason, or one of the call's own checks. */
export type RefusalReason =
  | 'unproven'
  | 'not-allowed'
  | 'bad-signature'
  | 'fingerprint-mismatch'
  | 'stale-announcement'
  | 'bad-key'
  /** Not a well-formed announcement. */
  | 'malformed'
  /** The announcement's fingerprint is not the one the member joined with (relay roster). */
  | 'roster-mismatch'
  /** The session of another member, announced under a second relay slot (a replay). */
  | 'duplicate-session';

/** A member (as it claimed to be) that was refused admission: it got no key, its media is dropped. */
export interface RefusedMember {
  /** As announced (authenticated for 'unproven', 'not-allowed', 'stale-announcement' and 'bad-key'). */
  fingerprint: string;
  /** The alias it claimed (its announcement's, else the relay's roster). */
  alias: string;
  reason: RefusalReason;
  /** Its relay slot when first refused. */
  sourceId: number;
  /** Announcements refused for it (repeats are not warned about again). */
  times: number;
  /** Media datagrams from its slots dropped. */
  packetsDropped: number;
}

/** What membership has to say (a part of the call's events). */
export type MembershipEvent =
  | { type: 'call:member-joined'; alias: string; fingerprint: string; trust: MemberTrust; firstSeen?: string }
  | { type: 'call:member-left'; alias: string; fingerprint: string }
  /** A member came back after losing the relay: its new session replaced its old one. */
  | { type: 'call:member-reconnected'; alias: string; fingerprint: string; trust: MemberTrust }
  /** An announcement refused admission (said once per member and reason). */
  | { type: 'call:member-refused'; refused: RefusedMember; message: string }
  | { type: 'call:warning'; message: string };

/** An admitted member (one room session of one identity). */
export interface Member {
  readonly sourceId: number;
  /** As signed into its announcement (empty: it gave none). */
  readonly alias: string;
  readonly fingerprint: string;
  /** Its room session in our keyring (X25519 public key, base64): one identity may have several. */
  session: string;
  readonly trust: MemberTrust;
  /** It left (or came back as a new session, or we lost the relay). */
  left: boolean;
}

/** What the call does when membership changes (media streams live elsewhere: playout). */
export interface MembershipHooks {
  /** A member was admitted (after `replaced`, its earlier session, was retired). */
  admitted?(member: Member, replaced: Member | undefined): void;
  /** A member's stream is over: it left, came back as a new session, or the link was lost. */
  retired?(member: Member): void;
  /** A wrapped key from this member was taken: media that overtook it can be opened now. */
  keyArrived?(member: Member): void;
  /** Whether anything was heard from this member (silent ones give way in the departed list). */
  heard?(member: Member): boolean;
}

export interface RoomMembershipOptions {
  identity: Identity;
  room: string;
  alias: string;
  roomSecret?: string;
  /** Admit only these identities (canonical fingerprints) and our own. */
  allow?: readonly string[];
  members?: MemberDirectory;
  /** Send a room signal to one member (by source id) or to all others; a failure becomes a warning. */
  send(payload: Record<string, unknown>, to?: number): Promise<void>;
  emit?(e: MembershipEvent): void;
  hooks?: MembershipHooks;
  /** Paces rotations (default: the real clock). */
  clock?: Clock;
  /**
   * A 1:1 call's first sender keys, derived by both sides (RoomKeyringOptions.seeded): for
   * the first room session only; a re-join after a lost relay exchanges keys as usual.
   */
  seeded?: SeededKeys;
}

/** A refusal membership itself decides (the keyring's are KeyExchangeErrors). */
export class AdmissionRefused extends ProtocolError {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'AdmissionRefused';
  }
}

export class RoomMembership {
  /** What the relay sees of the room: an id derived from its name (and secret). */
  readonly roomId: string;
  /** Secret: proofs of knowing the room's name are made and checked with it. */
  readonly #admissionKey: Uint8Array;
  readonly allow: readonly string[] | undefined;
  readonly #opts: RoomMembershipOptions;
  readonly #clock: Clock;
  /** A new one for each room session (each re-join after a lost relay). */
  #keyring: RoomKeyring;
  #sourceId = 0;
  #stopped = false;
  /** Our own earlier room sessions: until the relay notices they are gone, ignored. */
  readonly #ownPastSessions = new Set<string>();
  readonly #current = new Map<number, Member>();
  /** Members who left, kept for the report (MAX_DEPARTED_REPORTED: see retire). */
  readonly #departed: Member[] = [];
  #departedNotListed = 0;
  /** Refused members by `reason fingerprint` (the first MAX_REFUSED_REPORTED). */
  readonly #refused = new Map<string, RefusedMember>();
  #refusedNotListed = 0;
  /** Relay slots of refused members (the newest MAX_REFUSED_SLOTS): their media is dropped and counted. */
  readonly #refusedSlots = new Map<number, RefusedMember>();
  /** Look-alike alias pairs already warned about. */
  readonly #aliasWarnings = new Set<string>();
  #keyRotations = 0;
  #lastRotationAt = -Infinity;
  #rotationTimer: unknown;
  /** Key messages from members whose announcement has not arrived yet. */
  readonly #pendingKeys: WrappedKeyMessage[] = [];
  readonly #roster = new Map<number, RoomParticipant>();
  /** Room updates pushed before our join answer came (see onPush). */
  readonly #earlyRosters: Extract<KnownSignal, { type: 'room-update' }>[] = [];

  constructor(opts: RoomMembershipOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    ({ roomId: this.roomId, admissionKey: this.#admissionKey } = deriveRoomKeys(opts.room, opts.roomSecret));
    this.allow = opts.allow === undefined ? undefined : [...new Set(opts.allow)];
    this.#keyring = this.#newKeyring(undefined, opts.seeded);
  }

  /** Our relay slot in the current room session (0 before the join answer, and while the link is down). */
  get sourceId(): number {
    return this.#sourceId;
  }

  /** Our room session (X25519 public key, base64). */
  get session(): string {
    return this.#keyring.session;
  }

  /** Our signed announcement for the current room session. */
  localAnnouncement(): MemberAnnouncement {
    return this.#keyring.localAnnouncement();
  }

  /** Seals what we send with our current sender key. */
  encryptor(): MediaEncryptor {
    return this.#keyring.encryptor();
  }

  /** Opens what a member sends, once its key is in. */
  decryptorFor(member: Member): MediaDecryptor | undefined {
    return this.#keyring.decryptorFor(member.session);
  }

  /** The members admitted now, by relay slot. */
  get members(): ReadonlyMap<number, Member> {
    return this.#current;
  }

  /** Times our sender key rotated. */
  get keyRotations(): number {
    return this.#keyRotations;
  }

  /** The key rotation is waiting for the end of the interval. */
  get rotationPending(): boolean {
    return this.#rotationTimer !== undefined;
  }

  /** Members who left (at most MAX_DEPARTED_REPORTED), and how many more were not listed. */
  departed(): { listed: readonly Member[]; notListed: number } {
    return { listed: this.#departed, notListed: this.#departedNotListed };
  }

  /** Refused members (copies; at most MAX_REFUSED_REPORTED), and how many more refusals were only counted. */
  refused(): { listed: RefusedMember[]; notListed: number } {
    return { listed: [...this.#refused.values()].map((r) => ({ ...r })), notListed: this.#refusedNotListed };
  }

  /** Sizes of everything kept about others, for tests and diagnostics. */
  sizes(): { current: number; departed: number; refused: number; refusedSlots: number; pendingKeys: number; roster: number; earlyRosters: number; ownPastSessions: number } {
    return {
      current: this.#current.size,
      departed: this.#departed.length,
      refused: this.#refused.size,
      refusedSlots: this.#refusedSlots.size,
      pendingKeys: this.#pendingKeys.length,
      roster: this.#roster.size,
      earlyRosters: this.#earlyRosters.length,
      ownPastSessions: this.#ownPastSessions.size,
    };
  }

  /**
   * The relay's answer to our join: our slot, the roster, and the members' announcements
   * (from a relay that keeps them): admit them all, take the updates that came before the
   * answer, then one sender key wrapped for everyone and our announcement as a room signal
   * (members whose client or relay predates announcements in joins learn of us only this way).
   */
  joined(join: { sourceId: number; participants: readonly RoomParticipant[]; announcements?: readonly MemberAnnouncementEntry[] }): void {
    this.#sourceId = join.sourceId;
    for (const p of join.participants) this.#rosterSet(p);
    for (const e of join.announcements ?? []) this.#tryAdmit(e.sourceId, e.announcement);
    for (const m of this.#earlyRosters.splice(0)) this.#onRoster(m.participants, m.joined, m.left, m.announcement);
    // Our first key for this session goes out now, whatever the rotation pace.
    void this.#distributeKeys();
    void this.#send({ kind: 'announce', announcement: this.#keyring.localAnnouncement() });
  }

  /** A message the relay pushed: room updates and members' room signals for this room. */
  onPush(msg: KnownSignal): void {
    if (msg.type === 'room-update' && msg.room === this.roomId) {
      // Before our join answer (pushes and answers travel on different streams) we cannot
      // tell our own join notice from someone else's: keep the update until then.
      if (this.#sourceId === 0) {
        if (this.#earlyRosters.length < MAX_EARLY_ROSTERS) this.#earlyRosters.push(msg);
      } else this.#onRoster(msg.participants, msg.joined, msg.left, msg.announcement);
    } else if (msg.type === 'relayed' && msg.room === this.roomId) {
      this.#onRelayed(msg.from, msg.payload);
    }
  }

  /**
   * Media from a relay slot: the admitted member it belongs to, or undefined (not admitted,
   * yet or ever; a refused member's packet is counted as dropped).
   */
  mediaFrom(sourceId: number): Member | undefined {
    const m = this.#current.get(sourceId);
    if (m) return m;
    const refused = this.#refusedSlots.get(sourceId);
    if (refused) refused.packetsDropped++;
    return undefined;
  }

  /**
   * The relay is gone: everyone we had is gone with it (whoever is still there is met again
   * on re-joining), and the next join is a new room session whose announcement says it
   * replaces this one (the others drop the old one at once, instead of keeping it until the
   * relay notices the dead connection).
   */
  linkLost(): void {
    this.#clearRotation();
    this.#rememberOwnSession(this.#keyring.session);
    for (const m of [...this.#current.values()]) this.#retire(m);
    this.#roster.clear();
    this.#earlyRosters.length = 0;
    this.#pendingKeys.length = 0;
    this.#sourceId = 0;
    this.#keyring = this.#newKeyring(this.#keyring.session);
  }

  /** The call is over: no more rotations. */
  stop(): void {
    this.#stopped = true;
    this.#clearRotation();
  }

  #clearRotation(): void {
    if (this.#rotationTimer !== undefined) this.#clock.clearTimer(this.#rotationTimer);
    this.#rotationTimer = undefined;
  }

  #rememberOwnSession(session: string): void {
    this.#ownPastSessions.add(session);
    if (this.#ownPastSessions.size > MAX_OWN_PAST_SESSIONS) this.#ownPastSessions.delete(this.#ownPastSessions.values().next().value as string);
  }

  async #send(payload: Record<string, unknown>, to?: number): Promise<void> {
    try {
      await this.#opts.send(payload, to);
    } catch (err) {
      this.#emit({ type: 'call:warning', message: `room signal not delivered: ${errorMessage(err)}` });
    }
  }

  #emit(e: MembershipEvent): void {
    this.#opts.emit?.(e);
  }

  /** A keyring for a new room session (the first, or after getting back to a lost relay). */
  #newKeyring(replaces?: string, seeded?: SeededKeys): RoomKeyring {
    return new RoomKeyring(this.#opts.identity, this.roomId, {
      admissionKey: this.#admissionKey,
      alias: this.#opts.alias,
      ...(replaces === undefined ? {} : { replaces }),
      ...(seeded === undefined ? {} : { seeded }),
      ...(this.allow === undefined ? {} : { allow: this.allow }),
    });
  }

  #rosterSet(p: RoomParticipant): void {
    this.#roster.delete(p.sourceId);
    this.#roster.set(p.sourceId, p);
    if (this.#roster.size > MAX_ROSTER) this.#roster.delete(this.#roster.keys().next().value as number);
  }

  #onRoster(participants: readonly RoomParticipant[], joined?: number, left?: number, announcement?: unknown): void {
    for (const p of participants) this.#rosterSet(p);
    if (joined !== undefined && joined !== this.#sourceId) {
      // The newcomer's announcement came with the notice: admit it and send our key soon.
      if (announcement !== undefined) {
        if (this.#tryAdmit(joined, announcement)) this.#scheduleRotation();
      } else {
        // Introduce ourselves to the newcomer. A relay that hands announcements on with the
        // notice has given it ours in its join answer already; older relays need this.
        void this.#send({ kind: 'announce', announcement: this.#keyring.localAnnouncement() }, joined);
      }
    }
    if (left !== undefined) {
      const m = this.#current.get(left);
      this.#roster.delete(left);
      if (m) {
        this.#retire(m);
        this.#keyring.removeMember(m.session);
        this.#emit({ type: 'call:member-left', alias: m.alias, fingerprint: m.fingerprint });
        // Whoever left must not read what we send from the next rotation on (at most
        // ROTATION_INTERVAL_MS from now).
        this.#scheduleRotation();
      }
    }
  }

  /**
   * A member's stream is over (it left, or came back as a new session): kept for the report.
   * At most MAX_DEPARTED_REPORTED are listed; beyond that, sessions we heard nothing from
   * (a member joining and leaving in a loop) give way to those we heard, and are counted.
   */
  #retire(m: Member): void {
    m.left = true;
    this.#current.delete(m.sourceId);
    this.#opts.hooks?.retired?.(m);
    if (this.#departed.length < MAX_DEPARTED_REPORTED) {
      this.#departed.push(m);
      return;
    }
    this.#departedNotListed++;
    const heard = (d: Member): boolean => this.#opts.hooks?.heard?.(d) ?? false;
    if (!heard(m)) return;
    const silent = this.#departed.findIndex((d) => !heard(d));
    if (silent >= 0) {
      this.#departed.splice(silent, 1);
      this.#departed.push(m);
    }
  }

  #onRelayed(from: number, payload: Record<string, unknown>): void {
    try {
      // Membership changed: a new sender key for everyone current, including the newcomer. (A
      // repeated announcement, e.g. the broadcast after the relay delivered it, changes nothing.)
      if (payload.kind === 'announce') {
        if (this.#tryAdmit(from, payload.announcement)) this.#scheduleRotation();
      } else if (payload.kind === 'key') this.#onKey(payload.message);
    } catch (err) {
      this.#emit({ type: 'call:warning', message: `dropped a key-exchange message from member ${from}: ${errorMessage(err)}` });
    }
  }

  /** admit(), with a refused announcement recorded (and said once) instead of thrown. */
  #tryAdmit(from: number, announcement: unknown): boolean {
    try {
      return this.#admit(from, announcement);
    } catch (err) {
      this.#refuse(from, announcement, err);
      return false;
    }
  }

  /**
   * Record a refused announcement: listed in the report (the first MAX_REFUSED_REPORTED
   * members) and said once per member and reason, however often it is repeated. Such a member
   * gets no key from us and its media is dropped.
   */
  #refuse(from: number, announcement: unknown, err: unknown): void {
    const reason = refusalReason(err);
    if (reason === 'self') return; // the relay's notice of our own join
    if (reason === undefined) {
      this.#emit({ type: 'call:warning', message: `refused the announcement of member ${from}: ${errorMessage(err)}` });
      return;
    }
    const claimed = claimedIdentity(announcement, this.#roster.get(from));
    const key = `${reason} ${claimed.fingerprint}`;
    const listed = this.#refused.get(key);
    if (listed) {
      listed.times++;
      this.#rememberRefusedSlot(from, listed);
      return;
    }
    if (this.#refused.size >= MAX_REFUSED_REPORTED) {
      if (this.#refusedNotListed++ === 0) {
        this.#emit({ type: 'call:warning', message: `more than ${MAX_REFUSED_REPORTED} members refused: the others are counted in the report, not named` });
      }
      return;
    }
    const refused: RefusedMember = { ...claimed, reason, sourceId: from, times: 1, packetsDropped: 0 };
    this.#refused.set(key, refused);
    this.#rememberRefusedSlot(from, refused);
    const who = `${claimed.alias ? `"${claimed.alias}" ` : ''}${claimed.fingerprint || '(no fingerprint)'} (member ${from})`;
    // The keyring's own words add nothing for these two; for the others they say what failed.
    const detail = reason === 'unproven' || reason === 'not-allowed' ? '' : ` (${errorMessage(err)})`;
    this.#emit({ type: 'call:member-refused', refused, message: `refused ${who}: ${REFUSAL_TEXT[reason]}${detail}; it gets no key and its media is dropped` });
  }

  #rememberRefusedSlot(from: number, refused: RefusedMember): void {
    if (this.#current.has(from)) return; // an admitted member whose repeat was refused keeps its slot
    this.#refusedSlots.delete(from);
    this.#refusedSlots.set(from, refused);
    if (this.#refusedSlots.size > MAX_REFUSED_SLOTS) this.#refusedSlots.delete(this.#refusedSlots.keys().next().value as number);
  }

  /**
   * Admit a member from its signed and proven announcement (checked against the fingerprint
   * it joined with before the keyring takes it); true when the membership changed and our
   * sender key must rotate.
   */
  #admit(from: number, announcement: unknown): boolean {
    const claimed = this.#roster.get(from);
    const { fingerprint: announced, x25519PublicKey: session } = parseMemberAnnouncement(announcement);
    if (claimed && claimed.fingerprint && claimed.fingerprint !== announced) {
      throw new AdmissionRefused('roster-mismatch', `member ${from} announced ${announced} but joined as ${claimed.fingerprint}`);
    }
    // Our own session from before a reconnection, still in the room until the relay notices.
    if (this.#ownPastSessions.has(session)) return false;
    for (const m of this.#current.values()) {
      // One session is one member: the same announcement under a second relay slot is a replay.
      if (m.sourceId !== from && m.session === session) throw new AdmissionRefused('duplicate-session', `member ${from} announced the session of member ${m.sourceId}`);
    }
    const { fingerprint, replaced, alias = '', seeded } = this.#keyring.addMember(announcement);
    this.#refusedSlots.delete(from);
    const previous = replaced === undefined ? undefined : [...this.#current.values()].find((m) => m.session === replaced);
    if (previous) this.#retire(previous);
    const existing = this.#current.get(from);
    if (!existing) {
      const { trust, firstSeen } = this.#meet(fingerprint, alias);
      const member: Member = { sourceId: from, alias, fingerprint, session, trust, left: false };
      this.#current.set(from, member);
      this.#opts.hooks?.admitted?.(member, previous);
      this.#emit(
        previous
          ? { type: 'call:member-reconnected', alias, fingerprint, trust }
          : { type: 'call:member-joined', alias, fingerprint, trust, ...(firstSeen === undefined ? {} : { firstSeen }) },
      );
      // A seeded peer's key came with its admission: its media opens from the first packet.
      if (seeded) this.#opts.hooks?.keyArrived?.(member);
    } else if (existing.session !== session) {
      // The same member with a new session key replaces its old session, which may not read on.
      this.#keyring.removeMember(existing.session);
      existing.session = session;
    }
    // Keys that arrived before this announcement can be taken now.
    for (const m of this.#pendingKeys.splice(0)) this.#takeKey(m);
    return this.#keyring.needsRotation;
  }

  /**
   * How far we trust an admitted member, and the meeting recorded in the known members (with
   * a warning, once per pair, when its alias is a known member's with another fingerprint).
   */
  #meet(fingerprint: string, alias: string): { trust: MemberTrust; firstSeen?: string } {
    const allowed = this.allow !== undefined; // the keyring admitted only the allowed
    if (fingerprint === this.#opts.identity.fingerprint) return { trust: allowed ? 'allowed' : 'known' }; // our own words, another device
    const meeting = this.#opts.members?.meet(fingerprint, alias);
    for (const other of meeting?.sameAlias ?? []) {
      const pair = `${fingerprint} ${other.fingerprint}`;
      if (this.#aliasWarnings.has(pair) || this.#aliasWarnings.size >= MAX_ALIAS_WARNINGS) continue;
      this.#aliasWarnings.add(pair);
      this.#emit({
        type: 'call:warning',
        message: `member ${fingerprint} calls itself "${alias}", as does the member you know as ${other.fingerprint} ("${other.alias}", last seen ${other.lastSeen}): not the same identity`,
      });
    }
    const trust: MemberTrust = allowed ? 'allowed' : meeting?.known ? 'known' : 'new';
    return { trust, ...(meeting ? { firstSeen: meeting.firstSeen } : {}) };
  }

  #onKey(message: unknown): void {
    try {
      const { fromSession } = this.#keyring.receiveWrappedKey(message);
      // Datagrams sealed with this key that overtook it can be opened now.
      for (const m of this.#current.values()) if (m.session === fromSession) this.#opts.hooks?.keyArrived?.(m);
    } catch (err) {
      if ((err as { reason?: string } | null)?.reason === 'unknown-sender') {
        const from = (message as { from?: unknown } | null)?.from;
        // From someone we refused: it will never be a sender of ours.
        if (typeof from === 'string' && [...this.#refusedSlots.values()].some((r) => r.fingerprint === from)) return;
        // Kept for when its sender's announcement arrives; bounded, as anyone in the room can
        // send these (one per possible member is what a genuine overtaking needs).
        if (this.#pendingKeys.push(message as WrappedKeyMessage) > MAX_ROOM_PARTICIPANTS) {
          const dropped = this.#pendingKeys.shift();
          this.#emit({ type: 'call:warning', message: `dropped a wrapped key from ${dropped?.from}: no announcement from that sender arrived` });
        }
        return;
      }
      throw err;
    }
  }

  /** onKey() for a key kept earlier: a failure is a warning, not the admission's. */
  #takeKey(message: WrappedKeyMessage): void {
    try {
      this.#onKey(message);
    } catch (err) {
      this.#emit({ type: 'call:warning', message: `dropped a wrapped key from ${message.from}: ${errorMessage(err)}` });
    }
  }

  /**
   * Rotate soon: at once if we have not rotated for ROTATION_INTERVAL_MS, else at the end of
   * that interval (one rotation for every change in it).
   */
  #scheduleRotation(): void {
    if (this.#stopped || this.#rotationTimer !== undefined) return; // the rotation pending covers this change too
    const wait = this.#lastRotationAt + ROTATION_INTERVAL_MS - this.#clock.now();
    if (wait <= 0) {
      void this.#distributeKeys();
      return;
    }
    this.#rotationTimer = this.#clock.setTimer(() => {
      this.#rotationTimer = undefined;
      if (!this.#stopped) void this.#distributeKeys();
    }, Math.ceil(wait));
  }

  /** A new sender key wrapped for every current member, if the keyring needs one. */
  async #distributeKeys(): Promise<void> {
    if (!this.#keyring.needsRotation) return;
    this.#keyRotations++;
    const messages = this.#keyring.rotate();
    // A key wrapped for nobody (our first, alone in the room, or after the last member left)
    // costs no one anything: the next newcomer gets its key at once, not at the interval's end.
    if (messages.length > 0) this.#lastRotationAt = this.#clock.now();
    const sends: Promise<void>[] = [];
    for (const m of messages) {
      const target = [...this.#current.values()].find((r) => r.session === m.toSession);
      if (target) sends.push(this.#send({ kind: 'key', message: m }, target.sourceId));
    }
    await Promise.all(sends);
  }
}

const REFUSAL_TEXT: Record<RefusalReason, string> = {
  unproven: 'it did not prove it knows the room name (the relay, someone who knows only the room id, or a client that predates room admission)',
  'not-allowed': 'it knows the room name but is not on the --allow list',
  'bad-signature': 'its announcement is not signed by its identity for this room',
  'fingerprint-mismatch': 'its fingerprint is not the hash of its identity key',
  'stale-announcement': 'a replay of a session that already left',
  'bad-key': 'its session key is unusable',
  malformed: 'not a well-formed announcement',
  'roster-mismatch': 'its announcement names another identity than the one it joined with',
  'duplicate-session': "a replay of another member's session",
};

/** The refusal reason for an error admit() threw; undefined for anything unexpected. */
function refusalReason(err: unknown): RefusalReason | 'self' | undefined {
  if (err instanceof AdmissionRefused) return err.reason;
  if (err instanceof KeyExchangeError) {
    const reason = err.reason;
    return reason === 'self' || reason in REFUSAL_TEXT ? (reason as RefusalReason | 'self') : undefined;
  }
  if (err instanceof DecodeError) return 'malformed';
  return undefined;
}

/** Who an (untrusted) announcement says it is, clipped: for the refused list and warnings. */
function claimedIdentity(announcement: unknown, rostered: RoomParticipant | undefined): { fingerprint: string; alias: string } {
  const record = typeof announcement === 'object' && announcement !== null ? (announcement as Record<string, unknown>) : {};
  const text = (value: unknown, max: number): string | undefined =>
    typeof value === 'string' ? [...value].slice(0, max).join('').replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu, '\uFFFD') : undefined;
  return {
    fingerprint: text(record.fingerprint, FINGERPRINT_TEXT_LENGTH) ?? text(rostered?.fingerprint, FINGERPRINT_TEXT_LENGTH) ?? '',
    alias: text(record.alias, MAX_ALIAS_CODE_POINTS) ?? text(rostered?.alias, MAX_ALIAS_CODE_POINTS) ?? '',
  };
}

/** `xxxx:xxxx:...`: 16 groups of 4 and 15 colons. */
const FINGERPRINT_TEXT_LENGTH = 79;
