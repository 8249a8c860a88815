// What the page keeps across reloads, in IndexedDB: the conversations (one record each, with every turn and
// its answer's statistics) and a few named values (the settings, the last model loaded). Everything is
// structured-clone data. When IndexedDB is unavailable (some private windows), a Map stands in and the page
// works for its lifetime only.

export type AnswerEnd = 'stop' | 'length' | 'tool_calls' | 'stopped' | 'error';

export interface StoredAnswer {
  text: string;
  stats: string; // the statistics line as shown ("TTFT 1.2 s · 9.8 tok/s · 42 tokens · finished")
  end: AnswerEnd;
  error?: string;
}

export interface StoredTurn {
  user: string;
  answer: StoredAnswer | null; // null: not answered (yet)
}

export interface Conversation {
  id: string;
  title: string; // the first message, shortened
  createdAt: number; // ms since the epoch
  updatedAt: number;
  turns: StoredTurn[];
}

const DB_NAME = 'llama2-webgpu-demo';
const DB_VERSION = 1;

const promised = <T>(req: IDBRequest<T>): Promise<T> =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });

export class Store {
  private constructor(private readonly db: IDBDatabase | null, private readonly memory = new Map<string, unknown>()) {}

  /** Opens the database (or, failing that, an in-memory stand-in: `persistent` says which). */
  static async open(): Promise<Store> {
    try {
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains('conversations')) db.createObjectStore('conversations', { keyPath: 'id' });
        if (!db.objectStoreNames.contains('values')) db.createObjectStore('values');
      };
      return new Store(await promised(req));
    } catch {
      return new Store(null);
    }
  }

  get persistent(): boolean {
    return this.db !== null;
  }

  private tx(store: 'conversations' | 'values', mode: IDBTransactionMode): IDBObjectStore {
    return this.db!.transaction(store, mode).objectStore(store);
  }

  /** All conversations, the most recently updated first. */
  async conversations(): Promise<Conversation[]> {
    const all = this.db
      ? await promised(this.tx('conversations', 'readonly').getAll() as IDBRequest<Conversation[]>)
      : [...this.memory.entries()].filter(([k]) => k.startsWith('c:')).map(([, v]) => v as Conversation);
    return all.sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async putConversation(c: Conversation): Promise<void> {
    if (this.db) await promised(this.tx('conversations', 'readwrite').put(c));
    else this.memory.set(`c:${c.id}`, structuredClone(c));
  }

  async deleteConversation(id: string): Promise<void> {
    if (this.db) await promised(this.tx('conversations', 'readwrite').delete(id));
    else this.memory.delete(`c:${id}`);
  }

  async get<T>(key: string): Promise<T | undefined> {
    if (this.db) return (await promised(this.tx('values', 'readonly').get(key))) as T | undefined;
    return this.memory.get(`v:${key}`) as T | undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    if (this.db) await promised(this.tx('values', 'readwrite').put(value, key));
    else this.memory.set(`v:${key}`, structuredClone(value));
  }
}

export function newConversation(): Conversation {
  const now = Date.now();
  return { id: `${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`, title: 'New chat', createdAt: now, updatedAt: now, turns: [] };
}

/** A conversation's title: its first message on one line, cut at a word near 48 characters. */
export function titleOf(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (line.length <= 48) return line || 'New chat';
  const cut = line.lastIndexOf(' ', 48);
  return `${line.slice(0, cut > 24 ? cut : 48)}…`;
}
