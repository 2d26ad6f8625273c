package api

import (
	"fmt"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// Scope is what a token may do. Each scope includes the ones below it.
type Scope int

// The scopes, weakest first.
const (
	// ScopeRead allows lookups: clients, topics, memberships, commands,
	// health, events.
	ScopeRead Scope = iota + 1
	// ScopeOperate adds the changes of clients, topics, memberships and
	// keys, and protecting or unprotecting messages.
	ScopeOperate
	// ScopeAdmin adds tokens, the audit log and C2's own key pair.
	ScopeAdmin
)

var scopeNames = map[Scope]string{ScopeRead: "read", ScopeOperate: "operate", ScopeAdmin: "admin"}

// String returns the scope's name.
func (s Scope) String() string {
	if name, ok := scopeNames[s]; ok {
		return name
	}
	return fmt.Sprintf("scope(%d)", int(s))
}

// ParseScope parses "read", "operate" or "admin".
func ParseScope(name string) (Scope, error) {
	for s, n := range scopeNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown scope %q (want read, operate or admin)", name)
}

// rule is what a method needs: a scope, and whether calls are audited.
type rule struct {
	scope   Scope
	audited bool
}

// rules lists every method of the C2 service. A method missing here is
// refused to everyone (deny by default).
var rules = map[string]rule{
	c2pb.C2_AddClient_FullMethodName:     {ScopeOperate, true},
	c2pb.C2_GetClient_FullMethodName:     {ScopeRead, false},
	c2pb.C2_ListClients_FullMethodName:   {ScopeRead, false},
	c2pb.C2_RemoveClient_FullMethodName:  {ScopeOperate, true},
	c2pb.C2_ResetClient_FullMethodName:   {ScopeOperate, true},
	c2pb.C2_NewClientKey_FullMethodName:  {ScopeOperate, true},
	c2pb.C2_ImportClients_FullMethodName: {ScopeOperate, true},

	c2pb.C2_AddTopic_FullMethodName:    {ScopeOperate, true},
	c2pb.C2_GetTopic_FullMethodName:    {ScopeRead, false},
	c2pb.C2_ListTopics_FullMethodName:  {ScopeRead, false},
	c2pb.C2_RemoveTopic_FullMethodName: {ScopeOperate, true},
	c2pb.C2_RotateTopic_FullMethodName: {ScopeOperate, true},

	c2pb.C2_AddMember_FullMethodName:          {ScopeOperate, true},
	c2pb.C2_AddMembers_FullMethodName:         {ScopeOperate, true},
	c2pb.C2_RemoveMember_FullMethodName:       {ScopeOperate, true},
	c2pb.C2_IsMember_FullMethodName:           {ScopeRead, false},
	c2pb.C2_ListTopicsOfClient_FullMethodName: {ScopeRead, false},
	c2pb.C2_ListMembers_FullMethodName:        {ScopeRead, false},

	c2pb.C2_SendPubKey_FullMethodName:      {ScopeOperate, true},
	c2pb.C2_RemovePubKey_FullMethodName:    {ScopeOperate, true},
	c2pb.C2_ResetPubKeys_FullMethodName:    {ScopeOperate, true},
	c2pb.C2_LinkClients_FullMethodName:     {ScopeOperate, true},
	c2pb.C2_UnlinkClients_FullMethodName:   {ScopeOperate, true},
	c2pb.C2_ListLinks_FullMethodName:       {ScopeRead, false},
	c2pb.C2_SendC2SignerKey_FullMethodName: {ScopeOperate, true},
	c2pb.C2_GetC2Key_FullMethodName:        {ScopeRead, false},
	c2pb.C2_RotateC2Key_FullMethodName:     {ScopeAdmin, true},

	// Protecting a message lets the caller speak on a topic, unprotecting
	// lets it read one: operate, and audited though nothing changes.
	c2pb.C2_ProtectMessage_FullMethodName:   {ScopeOperate, true},
	c2pb.C2_UnprotectMessage_FullMethodName: {ScopeOperate, true},

	// Device state: reads, and the operator's declaration of whether a
	// device acknowledges, a change (audited).
	c2pb.C2_GetClientState_FullMethodName:        {ScopeRead, false},
	c2pb.C2_GetTopicState_FullMethodName:         {ScopeRead, false},
	c2pb.C2_ListTopicBehind_FullMethodName:       {ScopeRead, false},
	c2pb.C2_GetFleetState_FullMethodName:         {ScopeRead, false},
	c2pb.C2_SetClientAcknowledges_FullMethodName: {ScopeOperate, true},

	c2pb.C2_GetCommand_FullMethodName:   {ScopeRead, false},
	c2pb.C2_ListCommands_FullMethodName: {ScopeRead, false},
	c2pb.C2_GetHealth_FullMethodName:    {ScopeRead, false},
	c2pb.C2_GetInfo_FullMethodName:      {ScopeRead, false},
	c2pb.C2_ListEvents_FullMethodName:   {ScopeRead, false},
	c2pb.C2_WatchEvents_FullMethodName:  {ScopeRead, false},

	// The monitor's counters: reads (they name topics and senders, never
	// a key or a payload).
	c2pb.C2_GetMonitorStats_FullMethodName: {ScopeRead, false},
	c2pb.C2_ListMonitorTop_FullMethodName:  {ScopeRead, false},

	c2pb.C2_ListAudit_FullMethodName:   {ScopeAdmin, false},
	c2pb.C2_CreateToken_FullMethodName: {ScopeAdmin, true},
	c2pb.C2_ListTokens_FullMethodName:  {ScopeAdmin, false},
	c2pb.C2_RevokeToken_FullMethodName: {ScopeAdmin, true},

	c2pb.C2_AddPolicy_FullMethodName:        {ScopeAdmin, true},
	c2pb.C2_GetPolicy_FullMethodName:        {ScopeRead, false},
	c2pb.C2_ListPolicies_FullMethodName:     {ScopeRead, false},
	c2pb.C2_RemovePolicy_FullMethodName:     {ScopeAdmin, true},
	c2pb.C2_PausePolicy_FullMethodName:      {ScopeAdmin, true},
	c2pb.C2_ResumePolicy_FullMethodName:     {ScopeAdmin, true},
	c2pb.C2_PreviewRotations_FullMethodName: {ScopeRead, false},
	c2pb.C2_ListRotations_FullMethodName:    {ScopeRead, false},
}
