package schemas

import "time"

// The parts that several event payloads share. Field names are Gogs's own
// snake_case names; a time Gogs sent as the zero time (0001-01-01T00:00:00Z,
// "not loaded") is left out, as is a null object.

// User is a Gogs account: a sender, pusher, owner, author or assignee.
type User struct {
	ID        int64  `json:"id"`
	Login     string `json:"login"`
	FullName  string `json:"full_name"`
	Email     string `json:"email"`
	AvatarURL string `json:"avatar_url"`
}

// Permissions are the sender's rights on a repository, when Gogs sends them
// (a fork's parent).
type Permissions struct {
	Admin bool `json:"admin"`
	Push  bool `json:"push"`
	Pull  bool `json:"pull"`
}

// Repository is a Gogs repository.
type Repository struct {
	ID              int64        `json:"id"`
	Owner           User         `json:"owner"`
	Name            string       `json:"name"`
	FullName        string       `json:"full_name"`
	Description     string       `json:"description"`
	Private         bool         `json:"private"`
	Fork            bool         `json:"fork"`
	Parent          *Repository  `json:"parent,omitempty"`
	Empty           bool         `json:"empty"`
	Mirror          bool         `json:"mirror"`
	Size            int64        `json:"size"`
	HTMLURL         string       `json:"html_url"`
	SSHURL          string       `json:"ssh_url"`
	CloneURL        string       `json:"clone_url"`
	Website         string       `json:"website"`
	StarsCount      int64        `json:"stars_count"`
	ForksCount      int64        `json:"forks_count"`
	WatchersCount   int64        `json:"watchers_count"`
	OpenIssuesCount int64        `json:"open_issues_count"`
	DefaultBranch   string       `json:"default_branch"`
	CreatedAt       *time.Time   `json:"created_at,omitempty"`
	UpdatedAt       *time.Time   `json:"updated_at,omitempty"`
	Permissions     *Permissions `json:"permissions,omitempty"`
}

// CommitUser is a commit's author or committer as git recorded it. Username
// is the matching Gogs login, or "" when the e-mail matches no Gogs user.
type CommitUser struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

// Commit is one commit of a push. Gogs lists at most five, newest first.
// Added, Removed and Modified are never null (an empty list instead); renamed
// files appear in none of them, and Gogs cuts paths at their first space.
type Commit struct {
	ID        string     `json:"id"`
	Message   string     `json:"message"`
	URL       string     `json:"url"`
	Author    CommitUser `json:"author"`
	Committer CommitUser `json:"committer"`
	Added     []string   `json:"added"`
	Removed   []string   `json:"removed"`
	Modified  []string   `json:"modified"`
	// Timestamp is the committer date, in UTC; absent for a test delivery.
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// Label is an issue or pull request label.
type Label struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Color string `json:"color"`
	URL   string `json:"url"`
}

// Milestone is an issue or pull request milestone.
type Milestone struct {
	ID           int64      `json:"id"`
	Title        string     `json:"title"`
	Description  string     `json:"description"`
	State        string     `json:"state"`
	OpenIssues   int64      `json:"open_issues"`
	ClosedIssues int64      `json:"closed_issues"`
	ClosedAt     *time.Time `json:"closed_at,omitempty"`
	DueOn        *time.Time `json:"due_on,omitempty"`
}

// IssuePullRequest is present on an [Issue] that is a pull request.
type IssuePullRequest struct {
	Merged   bool       `json:"merged"`
	MergedAt *time.Time `json:"merged_at,omitempty"`
}

// Issue is an issue, or a pull request seen as an issue (issue_comment on a
// pull request): then PullRequest is set.
type Issue struct {
	ID          int64             `json:"id"`
	Number      int64             `json:"number"`
	User        User              `json:"user"`
	Title       string            `json:"title"`
	Body        string            `json:"body"`
	Labels      []Label           `json:"labels"`
	Milestone   *Milestone        `json:"milestone,omitempty"`
	Assignee    *User             `json:"assignee,omitempty"`
	State       string            `json:"state"`
	Comments    int64             `json:"comments"`
	CreatedAt   *time.Time        `json:"created_at,omitempty"`
	UpdatedAt   *time.Time        `json:"updated_at,omitempty"`
	PullRequest *IssuePullRequest `json:"pull_request,omitempty"`
}

// PullRequestInfo is a pull request.
type PullRequestInfo struct {
	ID         int64       `json:"id"`
	Number     int64       `json:"number"`
	User       User        `json:"user"`
	Title      string      `json:"title"`
	Body       string      `json:"body"`
	Labels     []Label     `json:"labels"`
	Milestone  *Milestone  `json:"milestone,omitempty"`
	Assignee   *User       `json:"assignee,omitempty"`
	State      string      `json:"state"`
	Comments   int64       `json:"comments"`
	HeadBranch string      `json:"head_branch"`
	HeadRepo   *Repository `json:"head_repo,omitempty"`
	BaseBranch string      `json:"base_branch"`
	BaseRepo   *Repository `json:"base_repo,omitempty"`
	HTMLURL    string      `json:"html_url"`
	// Mergeable is absent when Gogs has not computed it.
	Mergeable *bool      `json:"mergeable,omitempty"`
	Merged    bool       `json:"merged"`
	MergedAt  *time.Time `json:"merged_at,omitempty"`
	// MergeCommitSHA is, as Gogs sends it, the head commit of the merged
	// pull request, not the merge commit; "" while not merged.
	MergeCommitSHA string `json:"merge_commit_sha"`
	MergedBy       *User  `json:"merged_by,omitempty"`
}

// Comment is an issue or pull request comment.
type Comment struct {
	ID        int64      `json:"id"`
	HTMLURL   string     `json:"html_url"`
	User      User       `json:"user"`
	Body      string     `json:"body"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// ReleaseInfo is a release.
type ReleaseInfo struct {
	ID              int64      `json:"id"`
	TagName         string     `json:"tag_name"`
	TargetCommitish string     `json:"target_commitish"`
	Name            string     `json:"name"`
	Body            string     `json:"body"`
	Draft           bool       `json:"draft"`
	Prerelease      bool       `json:"prerelease"`
	Author          User       `json:"author"`
	CreatedAt       *time.Time `json:"created_at,omitempty"`
}

// ChangeFrom is the value a field had before an edit.
type ChangeFrom struct {
	From string `json:"from"`
}

// Changes says what an "edited" action changed.
type Changes struct {
	Title *ChangeFrom `json:"title,omitempty"`
	Body  *ChangeFrom `json:"body,omitempty"`
}
